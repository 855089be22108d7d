// Renderer: no Node, no sidecar handle; only window.taskmill from preload.cjs.
const statusLine = document.querySelector("#status");
const list = document.querySelector("#tasks");
const rows = new Map();

function show(event) {
  let row = rows.get(event.task_id);
  if (row === undefined) {
    row = document.createElement("li");
    rows.set(event.task_id, row);
    list.prepend(row);
  }
  let detail = "";
  if (event.kind === "progress") detail = `${Math.round(event.percent * 100)}% ${event.message ?? ""}`;
  else if (event.kind === "completed") detail = JSON.stringify(event.result);
  else if (event.kind === "failed") detail = event.error;
  row.textContent = `#${event.task_id} ${event.task_type}: ${event.kind} ${detail}`;
}

async function refresh() {
  const snap = await window.taskmill.snapshot();
  statusLine.textContent = `${snap.running.length} running, ${snap.pending_count} pending`;
}

window.taskmill.onEvent(show);
window.taskmill.onResync(() => void refresh());
window.taskmill.ready().then((ready) => {
  statusLine.textContent = `sidecar ${ready.version} ready (pid ${ready.pid})`;
});
document.querySelector("#run").addEventListener("click", () => {
  const ms = 500 + Math.floor(Math.random() * 2500);
  window.taskmill
    .submit({ task_type: "demo::sleep", payload: { ms, result: { slept: ms } } })
    .catch((error) => {
      statusLine.textContent = String(error);
    });
});
