// The same live progress list in React, with the hooks.
import { createRoot } from "react-dom/client";
import { connectWebSocket, createTaskStore } from "../../src/index.js";
import { TaskmillProvider, useTasks } from "../../src/react.js";

const store = createTaskStore(await connectWebSocket({ endpoint: { url: "ws://127.0.0.1:1", token: "t" } }));

function Progress() {
  const running = useTasks({ status: "running" });
  return <ul>{running.map((t) => <li key={t.id}>{t.label} <progress value={t.progress.percent} /></li>)}</ul>;
}

createRoot(document.getElementById("root")!).render(<TaskmillProvider store={store}><Progress /></TaskmillProvider>);
