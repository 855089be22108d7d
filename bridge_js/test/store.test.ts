import { afterEach, describe, expect, it } from "vitest";
import { TaskmillClient, createTaskStore, estimateProgress, type TaskStore, type TaskStoreState } from "../src/index.js";
import { FakeServer, NO_REPLY, historyRecord, record, taskEvent, until } from "./helpers.js";

const clients: TaskmillClient[] = [];
const stores: TaskStore[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) store.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function snapshot(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    running: [],
    pending_count: 0,
    paused_count: 0,
    blocked_count: 0,
    waiting_count: 0,
    progress: [],
    pressure: 0.1,
    pressure_breakdown: [{ source: "cpu", value: 0.1 }],
    resources: { cpu: 0, disk_read_bps: 0, disk_write_bps: 0, net_rx_bps: 0, net_tx_bps: 0, memory: 0 },
    max_concurrency: 4,
    is_paused: false,
    domains: [],
    groups: [],
    rate_limits: [],
    recurring: [],
    aging: null,
    seq: 100,
    ...over,
  };
}

/** A sidecar whose list/snapshot/history answers come from `model`, each answer counted. */
function setup(model: { running?: unknown[]; queued?: unknown[]; history?: unknown[]; snap?: Record<string, unknown> } = {}, options: Parameters<typeof createTaskStore>[1] = {}) {
  const server = new FakeServer();
  const calls: Record<string, number> = {};
  const count = (m: string): void => void (calls[m] = (calls[m] ?? 0) + 1);
  // One subscription per connection (the store's): id 1 on every link.
  server.handlers["events.subscribe"] = () => ({ subscription: 1 });
  server.handlers["task.list"] = (params) => {
    count("task.list");
    return { tasks: (model.queued ?? []).slice(0, Number(params["limit"] ?? 100)), total: (model.queued ?? []).length };
  };
  server.handlers["scheduler.snapshot"] = () => {
    count("scheduler.snapshot");
    return snapshot({ running: model.running ?? [], pending_count: (model.queued ?? []).length, ...model.snap });
  };
  server.handlers["history.list"] = () => {
    count("history.list");
    return { tasks: model.history ?? [], total: (model.history ?? []).length };
  };
  const client = new TaskmillClient({ connector: server.connector, reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: 0 } });
  clients.push(client);
  const store = createTaskStore(client, { refreshMs: 0, ...options });
  stores.push(store);
  const event = (kind: string, over: Record<string, unknown>): void => server.last.notify("event", taskEvent(kind, 1, over));
  return { server, client, store, calls, event };
}

const live = (store: TaskStore): Promise<void> => until(() => store.getSnapshot().status === "live");

describe("createTaskStore", () => {
  it("builds one view from task.list, scheduler.snapshot and history.list", async () => {
    const { client, store } = setup({
      running: [record({ id: 1, status: "running", started_at: 1000, group: "g" })],
      queued: [record({ id: 2 }), record({ id: 3, status: "paused" })],
      history: [historyRecord({ id: 0, result: { ok: 1 } })],
      snap: { progress: [{ task_id: 1, percent: 0.4, reported: true, extrapolated: false, message: "step 4" }], paused_count: 1, pending_count: 1 },
    });
    expect(store.getSnapshot().status).toBe("connecting");
    await client.connect();
    await live(store);
    const s = store.getSnapshot();
    expect(s.running.map((t) => [t.id, t.status, t.group, t.progress.percent, t.progress.message])).toEqual([[1, "running", "g", 0.4, "step 4"]]);
    expect(s.queued.map((t) => [t.id, t.status])).toEqual([
      [2, "pending"],
      [3, "paused"],
    ]);
    expect(s.finished.map((t) => [t.id, t.status, t.result])).toEqual([[0, "completed", { ok: 1 }]]);
    expect(s.counts).toEqual({ running: 1, pending: 1, paused: 1, blocked: 0, waiting: 0, queued: 2 });
    expect(s.byId.get(2)?.status).toBe("pending");
    expect(s.pressure).toBe(0.1);
    expect(s.seq).toBe(100);
    expect(s.snapshot?.max_concurrency).toBe(4);
    // Referential stability: nothing changed, same object.
    expect(store.getSnapshot()).toBe(s);
  });

  it("follows events: submitted, dispatched, progress, completed, with counts and a progress rate", async () => {
    const { client, store, event } = setup();
    await client.connect();
    await live(store);
    event("submitted", { seq: 101, task_id: 5, outcome: "inserted", at: 10_000 });
    expect(store.getSnapshot().queued.map((t) => t.id)).toEqual([5]);
    expect(store.getSnapshot().counts.pending).toBe(1);
    event("dispatched", { seq: 102, task_id: 5, attempt: 1, at: 10_000 });
    event("progress", { seq: 103, task_id: 5, percent: 0.2, message: "a", reported: true, at: 11_000 });
    let s = store.getSnapshot();
    expect(s.queued).toEqual([]);
    expect(s.counts).toMatchObject({ running: 1, pending: 0 });
    const task = s.running[0];
    expect(task?.progress).toMatchObject({ percent: 0.2, message: "a", reported: true, extrapolated: false, at: 11_000 });
    expect(task?.progress.rate).toBeCloseTo(0.2 / 1000);
    expect(estimateProgress(task!, 12_000)).toBeCloseTo(0.4);
    expect(estimateProgress(task!, 99_000)).toBe(0.99);
    event("completed", { seq: 104, task_id: 5, duration_ms: 3000, result: { slept_ms: 3000 }, at: 13_000 });
    s = store.getSnapshot();
    expect(s.running).toEqual([]);
    expect(s.finished[0]).toMatchObject({ id: 5, status: "completed", result: { slept_ms: 3000 }, finished_at: 13_000, duration_ms: 3000 });
    expect(estimateProgress(s.finished[0]!)).toBe(1);
  });

  it("batches notifications and keeps unchanged lists and tasks by identity", async () => {
    const { client, store, event } = setup({ running: [record({ id: 1, status: "running" })], queued: [record({ id: 2 })] });
    await client.connect();
    await live(store);
    const seen: TaskStoreState[] = [];
    const off = store.subscribe((state) => seen.push(state));
    expect(seen).toHaveLength(1); // Svelte contract: called at once.
    const before = store.getSnapshot();
    for (let i = 0; i < 5; i++) event("progress", { seq: 101 + i, task_id: 1, percent: i / 10, message: null, reported: true, at: 1000 + i });
    await Promise.resolve();
    expect(seen).toHaveLength(2);
    const after = store.getSnapshot();
    expect(after).not.toBe(before);
    expect(after.running[0]).not.toBe(before.running[0]);
    expect(after.queued).toBe(before.queued);
    expect(after.queued[0]).toBe(before.queued[0]);
    expect(after.counts).toBe(before.counts);
    off();
  });

  it("drops duplicate events by seq", async () => {
    const { client, store, event } = setup({ queued: [record({ id: 2 })] });
    await client.connect();
    await live(store);
    event("dispatched", { seq: 101, task_id: 2, attempt: 1 });
    const s = store.getSnapshot();
    event("dispatched", { seq: 101, task_id: 2, attempt: 1 });
    event("preempted", { seq: 99, task_id: 2, by_task_id: 3 });
    expect(store.getSnapshot()).toBe(s);
    expect(s.running.map((t) => t.id)).toEqual([2]);
  });

  it("replays events that arrive while a rebuild is in flight, skipping those the snapshot already holds", async () => {
    const model = { running: [record({ id: 1, status: "running" })], queued: [record({ id: 2 }), record({ id: 3 })] };
    const { server, client, store, event } = setup(model);
    server.handlers["scheduler.snapshot"] = () => NO_REPLY;
    await client.connect();
    const req = await server.last.request("scheduler.snapshot");
    // Sent before the snapshot was taken (seq <= 100): task 1 was already running, 2 was dispatched.
    event("progress", { seq: 99, task_id: 1, percent: 0.9, message: "old", reported: true });
    event("dispatched", { seq: 100, task_id: 2, attempt: 1 });
    // After the snapshot: 1 completes, 3 is cancelled.
    event("completed", { seq: 101, task_id: 1, duration_ms: 5, result: "done" });
    event("cancelled", { seq: 102, task_id: 3, reason: "cancelled" });
    server.last.respond(req.id, snapshot({ running: [record({ id: 1, status: "running" }), record({ id: 2, status: "running" })], progress: [{ task_id: 1, percent: 0.5, reported: true, extrapolated: false, message: "new" }], seq: 100, pending_count: 1 }));
    await live(store);
    const s = store.getSnapshot();
    expect(s.running.map((t) => t.id)).toEqual([2]);
    expect(s.queued).toEqual([]);
    expect(s.finished.map((t) => [t.id, t.status])).toEqual([
      [3, "cancelled"],
      [1, "completed"],
    ]);
    expect(s.counts).toMatchObject({ running: 1, pending: 0 });
    expect(s.seq).toBe(102);
  });

  it("rebuilds on lagged: the state ends equal to the sidecar's", async () => {
    const model = { running: [record({ id: 1, status: "running" })], queued: [record({ id: 2 })] };
    const { server, client, store, calls } = setup(model);
    await client.connect();
    await live(store);
    // The sidecar moved on while our buffer overflowed.
    model.running = [record({ id: 2, status: "running" })];
    model.queued = [record({ id: 4 }), record({ id: 5 })];
    server.last.notify("event", { subscription: 1, seq: 150, at: 1, kind: "lagged", missed: 40 });
    await until(() => calls["scheduler.snapshot"] === 2 && store.getSnapshot().status === "live");
    const s = store.getSnapshot();
    expect(s.running.map((t) => t.id)).toEqual([2]);
    expect(s.queued.map((t) => t.id)).toEqual([4, 5]);
    expect(s.counts.pending).toBe(2);
    expect(calls["history.list"]).toBe(2);
  });

  it("rebuilds after a reconnect to a restarted sidecar whose seq starts again from 0", async () => {
    const model = { running: [record({ id: 1, status: "running" })], queued: [] as unknown[], snap: { seq: 5000 } };
    const { server, client, store, calls, event } = setup(model);
    await client.connect();
    await live(store);
    model.running = [];
    model.queued = [record({ id: 1, status: "pending" })];
    model.snap = { seq: 3 };
    server.last.drop(new Error("the sidecar was killed by SIGKILL"));
    expect(store.getSnapshot().status).toBe("stale");
    await until(() => calls["scheduler.snapshot"] === 2 && store.getSnapshot().status === "live");
    expect(store.getSnapshot().queued.map((t) => [t.id, t.status])).toEqual([[1, "pending"]]);
    event("dispatched", { seq: 4, task_id: 1, attempt: 1 });
    expect(store.getSnapshot().running.map((t) => t.id)).toEqual([1]);
  });

  it("refreshes lists and counts after lifecycle events, at most every refreshMs", async () => {
    const model = { queued: [record({ id: 2 })] };
    const { client, store, calls, event } = setup(model, { refreshMs: 30 });
    await client.connect();
    await live(store);
    for (let i = 0; i < 5; i++) event("submitted", { seq: 101 + i, task_id: 10 + i, outcome: "inserted" });
    await until(() => calls["task.list"] === 2);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(calls["task.list"]).toBe(2);
    // Progress alone does not trigger a refresh.
    event("dispatched", { seq: 200, task_id: 2, attempt: 1 });
    await until(() => calls["task.list"] === 3);
    for (let i = 0; i < 5; i++) event("progress", { seq: 201 + i, task_id: 2, percent: i / 5, message: null, reported: true });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(calls["task.list"]).toBe(3);
  });

  it("bounds memory: queued keeps the lowest ids, finished the most recent", async () => {
    const { client, store, event } = setup({}, { queued: 3, finished: 2 });
    await client.connect();
    await live(store);
    for (let id = 1; id <= 6; id++) event("submitted", { seq: 100 + id, task_id: id, outcome: "inserted" });
    expect(store.getSnapshot().queued.map((t) => t.id)).toEqual([1, 2, 3]);
    expect(store.getSnapshot().counts.pending).toBe(6);
    for (let id = 1; id <= 3; id++) event("cancelled", { seq: 110 + id, task_id: id, reason: "cancelled", at: 1000 + id });
    const s = store.getSnapshot();
    expect(s.finished.map((t) => t.id)).toEqual([3, 2]);
    expect(s.byId.size).toBe(2);
  });

  it("a failure with a retry goes back to the queue; a final one carries its error and traceback", async () => {
    const { client, store, event } = setup({ running: [record({ id: 1, status: "running" })] });
    await client.connect();
    await live(store);
    event("failed", { seq: 101, task_id: 1, error: "boom", retryable: true, will_retry: true, retry_after_ms: 100, attempt: 1 });
    expect(store.getSnapshot().queued[0]).toMatchObject({ id: 1, status: "pending", retry_count: 1, error: "boom" });
    event("dispatched", { seq: 102, task_id: 1, attempt: 2 });
    event("dead_lettered", { seq: 103, task_id: 1, error: "boom again", retry_count: 1, traceback: "Traceback ..." });
    expect(store.getSnapshot().finished[0]).toMatchObject({ id: 1, status: "dead_letter", error: "boom again", traceback: "Traceback ..." });
  });

  it("tracks pause, resume and pressure events", async () => {
    const { server, client, store } = setup();
    await client.connect();
    await live(store);
    server.last.notify("event", { subscription: 1, seq: 101, at: 1, kind: "paused" });
    expect(store.getSnapshot().isPaused).toBe(true);
    server.last.notify("event", { subscription: 1, seq: 102, at: 1, kind: "pressure", pressure: 0.8, breakdown: [{ source: "ui", value: 0.8 }] });
    expect(store.getSnapshot()).toMatchObject({ pressure: 0.8, pressureBreakdown: [{ source: "ui", value: 0.8 }] });
  });

  it("subscribes with the domain and progress interval, and filters history by domain", async () => {
    const { server, client, store } = setup({ history: [historyRecord({ id: 1, domain: "media" }), historyRecord({ id: 2, domain: "demo" })] }, { domain: "media", progressIntervalMs: 250 });
    await client.connect();
    await live(store);
    expect((await server.last.request("events.subscribe")).params).toEqual({ filter: { progress_interval_ms: 250, domains: ["media"] } });
    expect((await server.last.request("scheduler.snapshot")).params).toEqual({ domain: "media" });
    expect((await server.last.request("task.list")).params).toEqual({ status: ["pending", "paused", "blocked", "waiting"], limit: 100, domain: "media" });
    expect(store.getSnapshot().finished.map((t) => t.id)).toEqual([1]);
  });

  it("goes to status closed with the client's reason, and stops following", async () => {
    const { server, client, store } = setup();
    await client.connect();
    await live(store);
    const seen: string[] = [];
    store.subscribe((s) => seen.push(s.status));
    await client.close();
    await until(() => store.getSnapshot().status === "closed");
    expect(store.getSnapshot().error).toMatchObject({ kind: "closed" });
    void server;
  });
});
