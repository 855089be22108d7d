// A live progress list WITHOUT the store: what every frontend had to write.
import { connectWebSocket, type TaskmillEvent } from "../../src/index.js";

declare const list: HTMLUListElement;
const client = await connectWebSocket({ endpoint: { url: "ws://127.0.0.1:1", token: "t" } });
const running = new Map<number, { label: string; percent: number }>();
const FINAL = new Set(["completed", "failed", "dead_lettered", "cancelled", "superseded", "expired", "dependency_failed", "preempted"]);
let lastSeq = 0;
let buffered: TaskmillEvent[] | null = null;

function apply(e: TaskmillEvent): void {
  if (e.seq <= lastSeq) return; // already in the snapshot, or a duplicate
  lastSeq = e.seq;
  if (e.kind === "dispatched") running.set(e.task_id, { label: e.label, percent: 0 });
  else if (e.kind === "progress") running.set(e.task_id, { label: e.label, percent: e.percent });
  else if (FINAL.has(e.kind) && "task_id" in e) running.delete(e.task_id);
}

async function resync(): Promise<void> {
  buffered = []; // events that arrive while the snapshot is on its way
  const snap = await client.snapshot();
  running.clear();
  for (const t of snap.running) running.set(t.id, { label: t.label, percent: t.progress.percent });
  lastSeq = snap.seq ?? 0;
  const events = buffered;
  buffered = null;
  for (const e of events) apply(e);
  render();
}

function render(): void {
  list.replaceChildren(
    ...[...running.values()].map((t) => {
      const li = document.createElement("li");
      li.textContent = `${t.label} ${Math.round(t.percent * 100)}%`;
      return li;
    }),
  );
}

await client.subscribe({ kinds: ["dispatched", "progress", ...(FINAL as Set<never>), "lagged"] }, (e) => {
  if (e.kind === "lagged") void resync(); // the sidecar dropped events: start over
  else if (buffered !== null) buffered.push(e);
  else {
    apply(e);
    render();
  }
}).ready;
client.onConnection((e) => {
  if (e.type === "open" && e.reconnected) lastSeq = 0; // a restarted sidecar counts from 0 again
  if (e.type === "resync") void resync(); // events were missed while away
});
await resync();
