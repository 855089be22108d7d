/**
 * Type-level tests of typed tasks (a task map), checked by `tsc --noEmit`:
 * a wrong payload, an unknown task type or a wrong worker result does not
 * compile; results, records and events are narrowed by task type.
 */

import { expectTypeOf } from "vitest";
import WebSocket from "ws";
import {
  TaskmillClient,
  connectWebSocket,
  createClient,
  createTaskStore,
  isTaskFailedError,
  webSocketConnector,
  type HistoryTaskRecord,
  type LiveTask,
  type SubmitParams,
  type TaskRecord,
} from "../src/index.js";
import { spawnSidecar } from "../src/node.js";

type Tasks = {
  "media::thumb": { payload: { path: string; size: number }; result: { thumb: string } };
  "sync::pull": { payload?: undefined; result: { changed: number } };
};

declare const client: TaskmillClient<Tasks>;

async function typed(): Promise<void> {
  // submit: the payload is checked against the task type.
  const { id } = await client.submit({ task_type: "media::thumb", payload: { path: "a.jpg", size: 128 }, priority: "high" });
  // @ts-expect-error: size must be a number
  await client.submit({ task_type: "media::thumb", payload: { path: "a.jpg", size: "128" } });
  // @ts-expect-error: the payload is required for media::thumb
  await client.submit({ task_type: "media::thumb" });
  // @ts-expect-error: not a task type of the map
  await client.submit({ task_type: "media::resize", payload: {} });
  await client.submit({ task_type: "sync::pull" }); // no payload needed

  // waitFor(id) knows the type from the id submit returned.
  const done = await client.waitFor(id);
  expectTypeOf(done.task_type).toEqualTypeOf<"media::thumb">();
  expectTypeOf(done.result).toEqualTypeOf<{ thumb: string } | null>();
  expectTypeOf(done.payload).toEqualTypeOf<{ path: string; size: number }>();
  // A plain number works, typed as any task of the map.
  const any = await client.waitFor(12);
  expectTypeOf(any).toEqualTypeOf<HistoryTaskRecord<Tasks>>();
  if (any.task_type === "sync::pull" && any.status === "completed") expectTypeOf(any.result).toEqualTypeOf<{ changed: number } | null>();

  // run(): the result, typed.
  const { thumb } = await client.run({ task_type: "media::thumb", payload: { path: "a.jpg", size: 64 } });
  expectTypeOf(thumb).toBeString();
  expectTypeOf(client.run({ task_type: "sync::pull" })).resolves.toEqualTypeOf<{ changed: number }>();
  // @ts-expect-error: wrong payload for run too
  await client.run({ task_type: "media::thumb", payload: { path: 1, size: 64 } });
  try {
    await client.run({ task_type: "sync::pull" });
  } catch (error) {
    if (isTaskFailedError(error)) expectTypeOf(error.record.status).toEqualTypeOf<import("../src/index.js").HistoryStatus>();
  }

  // submitBatch: each item checked on its own type.
  await client.submitBatch([{ task_type: "media::thumb", payload: { path: "b", size: 1 } }, { task_type: "sync::pull" }]);
  // @ts-expect-error: wrong payload in a batch item
  await client.submitBatch([{ task_type: "media::thumb", payload: { path: "b" } }]);
  const items: SubmitParams<Tasks>[] = [{ task_type: "sync::pull" }];
  void items;

  // Records are unions over the map, narrowed by task_type.
  const rec = await client.get(id);
  expectTypeOf(rec).toEqualTypeOf<TaskRecord<Tasks, "media::thumb">>();
  const list = await client.list();
  for (const t of list.tasks) {
    if (t.task_type === "media::thumb") expectTypeOf(t.payload.size).toBeNumber();
  }
  const snap = await client.snapshot({ domain: "media" });
  expectTypeOf(snap.running[0]!.task_type).toEqualTypeOf<"media::thumb" | "sync::pull">();
}
void typed;

// Event handlers are narrowed by task_type.
client.on("completed", (e) => {
  expectTypeOf(e.task_type).toEqualTypeOf<"media::thumb" | "sync::pull">();
  if (e.task_type === "media::thumb") expectTypeOf(e.result).toEqualTypeOf<{ thumb: string }>();
  else expectTypeOf(e.result).toEqualTypeOf<{ changed: number }>();
});
client.subscribe({ kinds: ["completed"], task_types: ["sync::pull"] }, (e) => {
  expectTypeOf(e.result.changed).toBeNumber();
});
// @ts-expect-error: not a task type of the map
client.subscribe({ task_types: ["media::resize"] }, () => undefined);

// Workers: the handler gets the typed task and must return the typed result.
void client.work("media::thumb", async (task, ctx) => {
  expectTypeOf(task.payload).toEqualTypeOf<{ path: string; size: number }>();
  await ctx.spawnChild({ task_type: "sync::pull" });
  // @ts-expect-error: wrong child payload
  await ctx.spawnChild({ task_type: "media::thumb", payload: 1 });
  return { thumb: `${task.payload.path}@${task.payload.size}` };
});
// @ts-expect-error: the result must be { thumb: string }
void client.work("media::thumb", () => ({ thumb: 1 }));
// @ts-expect-error: not a task type of the map
void client.work("media::resize", () => null);

// Every way to make a client takes the map.
expectTypeOf(createClient<Tasks>({ connector: webSocketConnector({ endpoint: { url: "ws://x" }, WebSocket }) })).toEqualTypeOf<TaskmillClient<Tasks>>();
expectTypeOf(connectWebSocket<Tasks>({ endpoint: { url: "ws://x" }, WebSocket })).resolves.toEqualTypeOf<TaskmillClient<Tasks>>();
expectTypeOf(spawnSidecar<Tasks>({ command: "x" })).resolves.toHaveProperty("client").toEqualTypeOf<TaskmillClient<Tasks>>();

// The store's tasks are typed too.
const store = createTaskStore(client);
for (const task of store.getSnapshot().running) {
  expectTypeOf(task).toEqualTypeOf<LiveTask<Tasks>>();
  if (task.task_type === "media::thumb" && task.result !== undefined) expectTypeOf(task.result.thumb).toBeString();
}

// Untyped use keeps working: any task type, unknown payloads and results.
declare const untyped: TaskmillClient;
async function loose(): Promise<void> {
  const { id } = await untyped.submit({ task_type: "anything::goes", payload: { x: 1 } });
  const rec = await untyped.waitFor(id);
  expectTypeOf(rec.result).toBeUnknown();
  expectTypeOf(await untyped.run({ task_type: "a::b" })).toBeUnknown();
  void untyped.work("a::b", () => ({ whatever: true }));
}
void loose;
