/**
 * The webview side: spawn the frozen sidecar through the shell plugin
 * (`taskmill-bridge/tauri`), follow task events, submit demo tasks.
 *
 * The argument list must match the `shell:allow-spawn` entry in
 * src-tauri/capabilities/default.json exactly (same order, same count).
 */

import { invoke } from "@tauri-apps/api/core";
import { appDataDir, join } from "@tauri-apps/api/path";
import { Command } from "@tauri-apps/plugin-shell";
import { isTaskmillError, type TaskEvent, type TaskId } from "taskmill-bridge";
import { spawnTauriSidecar, type TauriSidecar } from "taskmill-bridge/tauri";

function element<T extends HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (found === null) throw new Error(`missing ${selector}`);
  return found;
}

const status = element<HTMLParagraphElement>("#status");
const list = element<HTMLUListElement>("#tasks");
const rows = new Map<TaskId, HTMLLIElement>();

function show(event: TaskEvent): void {
  let row = rows.get(event.task_id);
  if (row === undefined) {
    row = document.createElement("li");
    rows.set(event.task_id, row);
    list.prepend(row);
  }
  const detail =
    event.kind === "progress" ? `${Math.round(event.percent * 100)}% ${event.message ?? ""}`
    : event.kind === "completed" ? JSON.stringify(event.result)
    : event.kind === "failed" ? event.error
    : "";
  row.textContent = `#${event.task_id} ${event.task_type}: ${event.kind} ${detail}`;
}

async function start(): Promise<TauriSidecar> {
  const db = await join(await appDataDir(), "tasks.db");
  const hostPid = await invoke<number>("host_pid");
  const sidecar = await spawnTauriSidecar({
    program: "binaries/taskmill-sidecar", // the exact bundle.externalBin entry
    // --drain-timeout-ms: a task still running at shutdown gets 2 s, then goes back to pending.
    args: ["--stdio", "--demo", "--db", db, "--drain-timeout-ms", "2000", "--parent-pid", String(hostPid)],
    Command,
    clientName: "taskmill-tauri-example/0.1.0",
    onStderr: (line) => console.debug("[sidecar]", line),
    restart: true, // respawn if it dies; subscriptions are restored, then "resync"
  });
  sidecar.client.subscribe({ kinds: ["submitted", "progress", "completed", "failed", "cancelled"] }, show);
  sidecar.client.onConnection((e) => {
    if (e.type === "resync") status.textContent = "sidecar restarted";
  });
  // The plugin cannot close the child's stdin: stop() asks for sidecar.shutdown,
  // and kills the child only if it has not exited in time.
  window.addEventListener("beforeunload", () => void sidecar.stop({ timeoutMs: 3000 }));
  return sidecar;
}

async function main(): Promise<void> {
  const { client, ready } = await start();
  status.textContent = `sidecar ${ready.version} ready (pid ${ready.pid}), db ${ready.db_path}`;
  element<HTMLButtonElement>("#run").addEventListener("click", () => {
    const ms = 500 + Math.floor(Math.random() * 2500);
    client
      .submit({ task_type: "demo::sleep", payload: { ms, result: { slept: ms } }, priority: "high" })
      .catch((error: unknown) => {
        status.textContent = isTaskmillError(error) ? `${error.kind}: ${error.message}` : String(error);
      });
  });
}

main().catch((error: unknown) => {
  status.textContent = `could not start the sidecar: ${String(error)}`;
});
