#!/usr/bin/env node
// Round-trip latency and event throughput against the real sidecar.
//
//   npm run build && TASKMILL_PYTHON=/path/to/python node bench/roundtrip.mjs [N] [EVENT_TASKS]
//
// Spawns `$TASKMILL_PYTHON -m taskmill --stdio --ws --demo --db <tmp>`, then:
// - N sequential `sidecar.info` and N/4 sequential `task.submit` calls, over
//   WebSocket (MessagePack) and over stdio (JSON lines): p50/p99/mean in ms;
// - EVENT_TASKS demo::echo tasks submitted in batches while subscribed to every
//   event over WebSocket: events/s received until all completed.
// Prints one JSON object on stdout.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { connectWebSocket } from "../dist/index.js";
import { spawnSidecar } from "../dist/node.js";

const python = process.env.TASKMILL_PYTHON;
if (!python) {
  console.error("set TASKMILL_PYTHON to a python that can run `python -m taskmill` (and run `npm run build` first)");
  process.exit(2);
}
const N = Number(process.argv[2] ?? 2000);
const EVENT_TASKS = Number(process.argv[3] ?? 2000);

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const total = samples.reduce((a, b) => a + b, 0);
  const round = (x) => Math.round(x * 1000) / 1000;
  return { n: samples.length, p50_ms: round(at(0.5)), p99_ms: round(at(0.99)), mean_ms: round(total / samples.length), max_ms: round(sorted.at(-1)), per_s: Math.round(samples.length / (total / 1000)) };
}

async function timeCalls(n, call) {
  for (let i = 0; i < Math.min(100, n); i++) await call(i); // Warm-up.
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call(i);
    samples.push(performance.now() - t0);
  }
  return summary(samples);
}

const dir = mkdtempSync(join(tmpdir(), "taskmill-bench-"));
const sidecar = await spawnSidecar({
  command: python,
  args: ["-m", "taskmill", "--stdio", "--ws", "--demo", "--db", join(dir, "bench.db")],
  stderr: process.env.TASKMILL_BENCH_VERBOSE ? "inherit" : "ignore",
});
const ws = sidecar.ready.transports.ws;
if (!ws) throw new Error("the sidecar announced no WebSocket endpoint");
const wsClient = await connectWebSocket({ endpoint: { url: ws.url, token: ws.token }, WebSocket, reconnect: false });
const out = { node: process.version, sidecar_version: sidecar.ready.version, n: N, transports: {}, events: null };

try {
  for (const [name, client] of [["websocket_msgpack", wsClient], ["stdio_json", sidecar.client]]) {
    const run = `${name}-${Date.now()}`;
    out.transports[name] = {
      "sidecar.info": await timeCalls(N, () => client.info()),
      "task.submit": await timeCalls(Math.max(1, Math.floor(N / 4)), (i) =>
        client.submit({ task_type: "demo::echo", payload: { i }, key: `${run}-${i}`, run_after_ms: 3_600_000 }),
      ),
    };
  }

  // Event throughput: everything the scheduler emits, over WebSocket.
  let events = 0;
  const done = new Set();
  const wanted = new Set();
  const off = wsClient.subscribe({ progress_interval_ms: 0 }, (e) => {
    events += 1;
    if (e.kind === "completed") done.add(e.task_id);
  });
  await off.ready;
  const t0 = performance.now();
  const run = `events-${Date.now()}`;
  for (let start = 0; start < EVENT_TASKS; start += 500) {
    const batch = [];
    for (let i = start; i < Math.min(EVENT_TASKS, start + 500); i++) batch.push({ task_type: "demo::echo", payload: { i }, key: `${run}-${i}` });
    for (const r of await wsClient.submitBatch(batch)) wanted.add(r.id);
  }
  const deadline = Date.now() + 120_000;
  while ([...wanted].some((id) => !done.has(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const seconds = (performance.now() - t0) / 1000;
  await off();
  out.events = {
    tasks: EVENT_TASKS,
    completed: [...wanted].filter((id) => done.has(id)).length,
    events_received: events,
    seconds: Math.round(seconds * 1000) / 1000,
    events_per_s: Math.round(events / seconds),
    tasks_per_s: Math.round(EVENT_TASKS / seconds),
  };
} finally {
  await wsClient.close();
  await sidecar.stop({ timeoutMs: 15_000 });
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(out, null, 2));
