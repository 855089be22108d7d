/**
 * A live progress list in React: taskmill-bridge's task store and hooks.
 * `serve.mjs` serves this page and a sidecar; `/endpoint` says where the
 * sidecar's WebSocket is right now (it changes when the sidecar restarts).
 */

import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { createClient, createTaskStore, isTaskFailedError, webSocketConnector, type WsEndpointInput } from "taskmill-bridge";
import { TaskmillProvider, useEstimatedProgress, useTask, useTaskmill, useTasks } from "taskmill-bridge/react";

/** The app's task types: payloads and results are typed from here on. */
type Tasks = {
  "demo::sleep": { payload: { ms: number; steps?: number }; result: { slept_ms: number } };
  "demo::echo": { payload: { text: string }; result: { text: string } };
};

const client = createClient<Tasks>({
  connector: webSocketConnector({ endpoint: async (): Promise<WsEndpointInput> => (await fetch("/endpoint")).json() as Promise<WsEndpointInput> }),
  clientName: "taskmill-react-example/0.1.0",
});
const store = createTaskStore(client, { finished: 12 });

function Status() {
  const { status, counts } = useTaskmill<Tasks>();
  return (
    <header>
      <h1>taskmill · React</h1>
      <span className="pill" data-testid="store-status" data-status={status}>{status}</span>
      <span className="muted" data-testid="counts">
        {counts.running} running · {counts.queued} queued
      </span>
    </header>
  );
}

function Bar({ id }: { id: number }) {
  const task = useTask<Tasks>(id);
  const percent = useEstimatedProgress(task);
  if (task === undefined) return null;
  return (
    <li className="task" data-testid="task-row" data-task-id={id}>
      <span className="muted">#{id}</span>
      <span>{task.label}</span>
      <div className="bar">
        <div data-testid="bar" data-percent={task.progress.percent.toFixed(3)} style={{ width: `${Math.round(percent * 100)}%` }} />
        <span>{Math.round(task.progress.percent * 100)}%{task.progress.message ? ` · ${task.progress.message}` : ""}</span>
      </div>
    </li>
  );
}

function Running() {
  const running = useTasks<Tasks>({ status: "running" });
  return (
    <section>
      <h2>Running</h2>
      <ul>{running.map((t) => <Bar key={t.id} id={t.id} />)}</ul>
      {running.length === 0 && <p className="muted">Nothing running.</p>}
    </section>
  );
}

function Finished() {
  const finished = useTasks<Tasks>({ status: "finished", limit: 12 });
  return (
    <section>
      <h2>Finished</h2>
      <ul>
        {finished.map((t) => (
          <li key={t.id} className="done" data-testid="done-row" data-task-id={t.id} data-status={t.status}>
            <span className="status">{t.status}</span>
            <span>#{t.id} {t.label}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

let batch = 0;

function Controls() {
  const [result, setResult] = useState("");
  const submit = () => {
    batch += 1;
    const key = `${Date.now().toString(36)}-${batch}`;
    void client.submitBatch(
      Array.from({ length: 6 }, (_, i) => ({ task_type: "demo::sleep" as const, payload: { ms: 1500 + i * 300, steps: 25 }, key: `${key}-${i}`, label: `sleep ${i + 1}/6` })),
    );
  };
  const run = async () => {
    setResult("running…");
    try {
      const { text } = await client.run({ task_type: "demo::echo", payload: { text: "hello from run()" } });
      setResult(`result: ${text}`);
    } catch (error) {
      setResult(isTaskFailedError(error) ? `task ${error.status}` : `error: ${String(error)}`);
    }
  };
  return (
    <section>
      <button type="button" data-testid="submit" onClick={submit}>Submit 6 × demo::sleep</button>{" "}
      <button type="button" data-testid="run" onClick={() => void run()}>run() a demo::echo</button>{" "}
      <span data-testid="run-result" className="muted">{result}</span>
    </section>
  );
}

function Banner() {
  const { status, error } = useTaskmill<Tasks>();
  if (status === "live" || status === "connecting") return null;
  const text = status === "closed" ? `Disconnected: ${error?.message ?? ""}` : "The sidecar went away: reconnecting, the list catches up when it is back.";
  return <div className="banner" data-testid="banner">{text}</div>;
}

function App() {
  return (
    <main>
      <Status />
      <Banner />
      <Controls />
      <Running />
      <Finished />
    </main>
  );
}

declare global {
  interface Window {
    taskmillReact?: { readonly client: typeof client; readonly store: typeof store };
  }
}
window.taskmillReact = { client, store };

const root = document.getElementById("root");
if (root !== null) {
  createRoot(root).render(
    <StrictMode>
      <TaskmillProvider store={store}>
        <App />
      </TaskmillProvider>
    </StrictMode>,
  );
}

/** The client does not retry a failed first connect: retry it here. */
async function connect(): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await client.connect();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, Math.min(3000, 300 * attempt)));
    }
  }
}
void connect();
