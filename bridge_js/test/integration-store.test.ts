/**
 * The task store against the REAL Python sidecar: after a sidecar restart
 * and after a forced `lagged`, the store ends equal to a fresh snapshot and
 * task list, with no task duplicated or lost.
 */

import { afterEach, expect, it } from "vitest";
import { createTaskStore, type TaskStore, type TaskmillClient } from "../src/index.js";
import { Sidecars, describeReal, unique, until } from "./real-sidecar.js";

const QUEUED = ["pending", "paused", "blocked", "waiting"] as const;

/** What the sidecar says now, in the store's terms. */
async function truth(client: TaskmillClient, queuedLimit: number) {
  const [snapshot, list] = await Promise.all([client.snapshot(), client.list({ status: QUEUED, limit: queuedLimit })]);
  return {
    running: snapshot.running.map((t) => t.id).sort((a, b) => a - b),
    queued: list.tasks.map((t) => t.id),
    counts: { pending: snapshot.pending_count, paused: snapshot.paused_count, blocked: snapshot.blocked_count, waiting: snapshot.waiting_count, running: snapshot.running.length },
  };
}

function view(store: TaskStore) {
  const s = store.getSnapshot();
  const { pending, paused, blocked, waiting, running } = s.counts;
  return { running: s.running.map((t) => t.id).sort((a, b) => a - b), queued: s.queued.map((t) => t.id), counts: { pending, paused, blocked, waiting, running } };
}

/** Waits until the store equals the sidecar, and checks that no task is listed twice. */
async function expectConsistent(store: TaskStore, client: TaskmillClient, queuedLimit: number): Promise<void> {
  let last: unknown;
  await until(
    async () => {
      const expected = await truth(client, queuedLimit);
      last = { store: view(store), sidecar: expected };
      return store.getSnapshot().status === "live" && JSON.stringify(view(store)) === JSON.stringify(expected);
    },
    20_000,
    "the store to equal a fresh snapshot",
  ).catch((error: unknown) => {
    throw new Error(`${String(error)}: ${JSON.stringify(last)}`);
  });
  const s = store.getSnapshot();
  const ids = [...s.running, ...s.queued, ...s.finished].map((t) => t.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect(s.byId.size).toBe(ids.length);
}

describeReal("the task store against the Python sidecar", (python) => {
  const sidecars = new Sidecars(python);
  afterEach(() => sidecars.stopAll());

  it("stays consistent across a sidecar restart (SIGKILL, respawn, reconnect)", async () => {
    const sidecar = await sidecars.spawn({ restart: { initialDelayMs: 50, maxDelayMs: 300 } });
    const client = await sidecars.connect(sidecar);
    const store = createTaskStore(client, { queued: 50, refreshMs: 300 });
    const batch = unique();
    // Three long tasks that run, five that wait, a few that finish.
    await client.submitBatch([
      ...[0, 1, 2].map((i) => ({ task_type: "demo::sleep", payload: { ms: 30_000, steps: 300 }, key: `${batch}-long-${i}` })),
      ...[0, 1, 2, 3, 4].map((i) => ({ task_type: "demo::sleep", payload: { ms: 10 }, key: `${batch}-later-${i}`, run_after_ms: 600_000 })),
      ...[0, 1, 2, 3].map((i) => ({ task_type: "demo::echo", payload: { i }, key: `${batch}-echo-${i}` })),
    ]);
    await until(() => store.getSnapshot().running.length === 3 && store.getSnapshot().queued.length === 5, 20_000, "3 running and 5 queued in the store");
    await until(() => store.getSnapshot().finished.length >= 4, 20_000, "the echoes to finish");
    const before = store.getSnapshot();
    const longIds = before.running.map((t) => t.id).sort();
    const laterIds = before.queued.map((t) => t.id);

    const oldPid = sidecar.ready.pid;
    sidecar.process.kill("SIGKILL");
    await until(() => store.getSnapshot().status === "stale", 10_000, "the store to go stale");
    await until(() => sidecar.ready.pid !== oldPid && store.getSnapshot().status === "live", 30_000, "the store to resync after the restart");

    // Recovery put the running tasks back to pending; they run again under the same ids.
    await until(() => store.getSnapshot().running.length === 3, 20_000, "the long tasks to run again");
    expect(store.getSnapshot().running.map((t) => t.id).sort()).toEqual(longIds);
    expect(store.getSnapshot().queued.map((t) => t.id)).toEqual(laterIds);
    await expectConsistent(store, client, 50);
    // And it keeps following: a new task shows up and finishes.
    const { id } = await client.submit({ task_type: "demo::echo", payload: "after", key: `${batch}-after` });
    await until(() => store.getSnapshot().finished.some((t) => t.id === id && t.status === "completed"), 20_000, "a new task to finish in the store");
    store.close();
  });

  it("stays consistent after a forced lagged (a paused reader overflows its subscription)", async () => {
    const sidecar = await sidecars.spawn({ restart: false });
    // The store follows the stdio client; work is submitted over WebSocket meanwhile.
    const store = createTaskStore(sidecar.client, { queued: 100, finished: 20, refreshMs: 300 });
    const lagged: number[] = [];
    await sidecar.client.subscribe(undefined, (e) => e.kind === "lagged" && lagged.push(e.missed)).ready;
    const submitter = await sidecars.connect(sidecar);
    await until(() => store.getSnapshot().status === "live", 10_000, "the store to start");
    const batch = unique();
    await submitter.submitBatch([
      ...[0, 1].map((i) => ({ task_type: "demo::sleep", payload: { ms: 60_000, steps: 600 }, key: `${batch}-long-${i}` })),
      ...[0, 1, 2].map((i) => ({ task_type: "demo::sleep", payload: { ms: 10 }, key: `${batch}-later-${i}`, run_after_ms: 600_000 })),
    ]);
    await until(() => store.getSnapshot().running.length === 2 && store.getSnapshot().queued.length === 3, 20_000, "the initial work in the store");

    // Stop reading the sidecar's stdout: the pipe fills, then the write backlog, then the
    // subscription buffers (1,024 events), and the overflow becomes `lagged`.
    sidecar.process.stdout?.pause();
    const pad = "p".repeat(400);
    const n = 2000;
    for (let start = 0; start < n; start += 500) {
      await submitter.submitBatch(Array.from({ length: 500 }, (_, i) => ({ task_type: "demo::echo", payload: { i: start + i, pad }, key: `${batch}-echo-${start + i}` })));
    }
    await until(async () => (await submitter.metrics()).counters.completed >= n, 60_000, "every echo to complete");
    // Meanwhile: one long task is cancelled and one more waits, which the store must pick up.
    const victim = store.getSnapshot().running[0]?.id ?? -1;
    await submitter.cancel(victim);
    const { id: extra } = await submitter.submit({ task_type: "demo::sleep", payload: { ms: 10 }, key: `${batch}-extra`, run_after_ms: 600_000 });
    sidecar.process.stdout?.resume();

    await until(() => lagged.length > 0, 30_000, "a lagged event");
    expect(lagged.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    await expectConsistent(store, submitter, 100);
    const s = store.getSnapshot();
    expect(s.running.map((t) => t.id)).not.toContain(victim);
    expect(s.queued.map((t) => t.id)).toContain(extra);
    expect(s.finished.length).toBeLessThanOrEqual(20);
    store.close();
  });
});
