/**
 * The webview side: spawn the frozen sidecar through the shell plugin
 * (`taskmill-bridge/tauri`), keep a task store (`createTaskStore`) and render
 * real progress bars from it: running tasks with their progress, the queue
 * size, and the last finished tasks. The store follows events, rebuilds after
 * a sidecar restart or a `lagged` event, and needs no framework: this is
 * plain DOM, redrawn on every store change.
 *
 * The argument list must match the `shell:allow-spawn` entry in
 * src-tauri/capabilities/default.json exactly (same order, same count).
 */

import { invoke } from "@tauri-apps/api/core";
import { appDataDir, join } from "@tauri-apps/api/path";
import { Command } from "@tauri-apps/plugin-shell";
import { createTaskStore, isTaskmillError, type LiveTask, type TaskStoreState } from "taskmill-bridge";
import { spawnTauriSidecar, type TauriSidecar } from "taskmill-bridge/tauri";

/** The task types this app submits, so payloads and results are typed. */
type Tasks = {
  "demo::sleep": { payload: { ms: number; steps?: number; result?: unknown }; result: unknown };
};

function element<T extends HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (found === null) throw new Error(`missing ${selector}`);
  return found;
}

const status = element<HTMLParagraphElement>("#status");
const running = element<HTMLUListElement>("#running");
const finished = element<HTMLUListElement>("#finished");
const counts = element<HTMLSpanElement>("#counts");

/** One row per task, kept by id so a bar is the same element from one render to the next. */
function renderList(list: HTMLUListElement, tasks: readonly LiveTask<Tasks>[], line: (task: LiveTask<Tasks>) => string, withBar: boolean): void {
  const rows = new Map([...list.children].map((li) => [(li as HTMLElement).dataset["id"], li as HTMLLIElement]));
  list.replaceChildren(
    ...tasks.map((task) => {
      const row = rows.get(String(task.id)) ?? document.createElement("li");
      row.dataset["id"] = String(task.id);
      if (withBar) {
        let bar = row.querySelector<HTMLProgressElement>("progress");
        if (bar === null) {
          bar = document.createElement("progress");
          bar.max = 1;
          row.prepend(bar, document.createElement("span"));
        }
        bar.value = task.progress.percent;
        (row.lastElementChild as HTMLSpanElement).textContent = ` ${line(task)}`;
      } else {
        row.textContent = line(task);
      }
      return row;
    }),
  );
}

function render(state: TaskStoreState<Tasks>): void {
  counts.textContent = `${state.counts.running} running, ${state.counts.queued} queued${state.status === "live" ? "" : ` (${state.status})`}`;
  renderList(running, state.running, (t) => `#${t.id} ${t.label}: ${Math.round(t.progress.percent * 100)}%${t.progress.extrapolated ? " (estimated)" : ""} ${t.progress.message ?? ""}`, true);
  renderList(finished, state.finished.slice(0, 10), (t) => `#${t.id} ${t.label}: ${t.status}${t.status === "completed" ? ` ${JSON.stringify(t.result)}` : t.error ? ` (${t.error})` : ""}`, false);
}

async function start(): Promise<TauriSidecar<Tasks>> {
  const db = await join(await appDataDir(), "tasks.db");
  const hostPid = await invoke<number>("host_pid");
  const sidecar = await spawnTauriSidecar<Tasks>({
    program: "binaries/taskmill-sidecar", // the exact bundle.externalBin entry
    // --drain-timeout-ms: a task still running at shutdown gets 2 s, then goes back to pending.
    args: ["--stdio", "--demo", "--db", db, "--drain-timeout-ms", "2000", "--parent-pid", String(hostPid)],
    Command,
    clientName: "taskmill-tauri-example/0.1.0",
    onStderr: (line) => console.debug("[sidecar]", line),
    restart: true, // respawn if it dies; the store rebuilds after the reconnect
  });
  // The plugin cannot close the child's stdin: stop() asks for sidecar.shutdown,
  // and kills the child only if it has not exited in time.
  window.addEventListener("beforeunload", () => void sidecar.stop({ timeoutMs: 3000 }));
  return sidecar;
}

async function main(): Promise<void> {
  const { client, ready } = await start();
  status.textContent = `sidecar ${ready.version} ready (pid ${ready.pid}), db ${ready.db_path}`;
  createTaskStore(client, { finished: 10 }).subscribe(render);
  void client.closed().then((reason) => {
    status.textContent = `the sidecar is gone: ${reason.message}`;
  });
  element<HTMLButtonElement>("#run").addEventListener("click", () => {
    const ms = 1500 + Math.floor(Math.random() * 3000);
    client
      .submit({ task_type: "demo::sleep", payload: { ms, steps: 20, result: { slept: ms } }, priority: "high" })
      .catch((error: unknown) => {
        status.textContent = isTaskmillError(error) ? `${error.kind}: ${error.message}` : String(error);
      });
  });
}

main().catch((error: unknown) => {
  status.textContent = `could not start the sidecar: ${String(error)}`;
});
