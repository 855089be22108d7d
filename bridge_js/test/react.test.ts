// @vitest-environment happy-dom
/**
 * The React hooks over a task store, rendered with react-dom in happy-dom.
 */

import { act, createElement as h, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import { TaskmillClient, createTaskStore, type LiveTask, type TaskStore, type TaskStoreState } from "../src/index.js";
import { TaskmillProvider, filterTasks, type TaskFilter, useEstimatedProgress, useTask, useTaskmill, useTasks } from "../src/react.js";
import { FakeServer, record, taskEvent, until } from "./helpers.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function liveStore(model: { running?: unknown[]; queued?: unknown[] }): Promise<{ store: TaskStore; event: (kind: string, over: Record<string, unknown>) => Promise<void> }> {
  const server = new FakeServer();
  server.handlers["events.subscribe"] = () => ({ subscription: 1 });
  server.handlers["task.list"] = () => ({ tasks: model.queued ?? [], total: (model.queued ?? []).length });
  server.handlers["history.list"] = () => ({ tasks: [], total: 0 });
  server.handlers["scheduler.snapshot"] = () => ({
    running: model.running ?? [],
    pending_count: (model.queued ?? []).length,
    paused_count: 0,
    blocked_count: 0,
    waiting_count: 0,
    progress: [],
    pressure: 0,
    pressure_breakdown: [],
    resources: {},
    max_concurrency: 4,
    is_paused: false,
    domains: [],
    groups: [],
    rate_limits: [],
    recurring: [],
    aging: null,
    seq: 10,
  });
  const client = new TaskmillClient({ connector: server.connector });
  const store = createTaskStore(client, { refreshMs: 0 });
  cleanups.push(() => client.close(), () => store.close());
  await client.connect();
  await until(() => store.getSnapshot().status === "live");
  // The store notifies in a microtask: an async act() flushes it.
  return { store, event: (kind, over) => act(async () => server.last.notify("event", taskEvent(kind, 1, over))) };
}

function mount(node: ReactNode): { container: HTMLElement; root: Root } {
  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  act(() => root.render(node));
  cleanups.push(() => {
    act(() => root.unmount());
    container.remove();
  });
  return { container, root };
}

describe("taskmill-bridge/react", () => {
  it("useTasks renders a live progress list through TaskmillProvider", async () => {
    const { store, event } = await liveStore({ running: [record({ id: 1, status: "running", label: "one" })], queued: [record({ id: 2, label: "two" })] });
    function Bars(): ReactNode {
      const running = useTasks({ status: "running" });
      return h("ul", null, ...running.map((t) => h("li", { key: t.id, "data-id": t.id }, `${t.label} ${Math.round(t.progress.percent * 100)}%`)));
    }
    const { container } = mount(h(TaskmillProvider, { store }, h(Bars)));
    expect(container.textContent).toBe("one 0%");
    await event("progress", { seq: 11, task_id: 1, percent: 0.5, message: null, reported: true });
    expect(container.textContent).toBe("one 50%");
    await event("dispatched", { seq: 12, task_id: 2, attempt: 1, label: "two" });
    expect(container.textContent).toBe("one 50%two 0%");
    await event("completed", { seq: 13, task_id: 1, duration_ms: 1, result: null });
    expect(container.textContent).toBe("two 0%");
  });

  it("useTask re-renders only when its task changes; useTaskmill on every change", async () => {
    const { store, event } = await liveStore({ running: [record({ id: 1, status: "running" }), record({ id: 2, status: "running" })] });
    const renders = { one: 0, all: 0 };
    function One(): ReactNode {
      renders.one += 1;
      const task = useTask(1);
      return h("span", null, task?.status ?? "gone");
    }
    function All(): ReactNode {
      renders.all += 1;
      const state = useTaskmill();
      return h("span", null, String(state.counts.running));
    }
    const { container } = mount(h(TaskmillProvider, { store }, h(One), h(All)));
    const before = { ...renders };
    await event("progress", { seq: 11, task_id: 2, percent: 0.3, message: null, reported: true });
    expect(renders.one).toBe(before.one);
    expect(renders.all).toBe(before.all + 1);
    await event("cancelled", { seq: 12, task_id: 1, reason: "cancelled" });
    expect(renders.one).toBe(before.one + 1);
    expect(container.textContent).toBe("cancelled1");
  });

  it("takes the store as an argument too, and says what to do without one", async () => {
    const { store } = await liveStore({ queued: [record({ id: 7 })] });
    function WithArg(): ReactNode {
      return h("b", null, String(useTasks({ status: "queued" }, store).length));
    }
    expect(mount(h(WithArg)).container.textContent).toBe("1");
    function Orphan(): ReactNode {
      useTaskmill();
      return null;
    }
    const root = createRoot(document.createElement("div"));
    expect(() => act(() => root.render(h(Orphan)))).toThrow(/TaskmillProvider/);
    act(() => root.unmount());
  });

  it("useEstimatedProgress moves a running bar on between reports", async () => {
    const now = Date.now();
    const { store, event } = await liveStore({ running: [record({ id: 1, status: "running", started_at: now })] });
    await event("progress", { seq: 11, task_id: 1, percent: 0.1, message: null, reported: true, at: now });
    await event("progress", { seq: 12, task_id: 1, percent: 0.2, message: null, reported: true, at: now + 100 });
    const seen: number[] = [];
    function Bar(): ReactNode {
      const task = useTask(1);
      const estimate = useEstimatedProgress(task, 20);
      seen.push(estimate);
      return null;
    }
    mount(h(TaskmillProvider, { store }, h(Bar)));
    await act(() => new Promise((resolve) => setTimeout(resolve, 120)));
    expect(Math.max(...seen)).toBeGreaterThan(0.2);
    expect(Math.max(...seen)).toBeLessThanOrEqual(0.99);
  });

  it("filterTasks: status lists and statuses, types, tags, where, limit", () => {
    const t = (id: number, over: Partial<LiveTask>): LiveTask => ({ id, task_type: "a::x", status: "pending", tags: {}, domain: "a", group: null, ...over }) as LiveTask;
    const state = {
      running: [t(1, { status: "running", task_type: "a::y" })],
      queued: [t(2, { status: "paused", tags: { album: "2024" } }), t(3, {})],
      finished: [t(4, { status: "failed", group: "g" })],
    } as unknown as TaskStoreState;
    const ids = (f: TaskFilter): number[] => filterTasks(state, f).map((x) => x.id);
    expect(ids({})).toEqual([1, 2, 3, 4]);
    expect(ids({ status: "active" })).toEqual([1, 2, 3]);
    expect(ids({ status: "paused" })).toEqual([2]);
    expect(ids({ status: ["failed", "running"] })).toEqual([1, 4]);
    expect(ids({ task_type: "a::y" })).toEqual([1]);
    expect(ids({ tags: { album: "2024" } })).toEqual([2]);
    expect(ids({ group: "g" })).toEqual([4]);
    expect(ids({ where: (x) => x.id % 2 === 1, limit: 1 })).toEqual([1]);
  });
});
