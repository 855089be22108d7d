/**
 * Type-level tests, checked by `tsc --noEmit` (npm run typecheck). Nothing
 * here runs; every assertion is a compile-time check.
 */

import { expectTypeOf } from "vitest";
import WebSocket from "ws";
import {
  TaskmillClient,
  type ActiveTaskRecord,
  type EventOf,
  type HistoryTaskRecord,
  type MethodParams,
  type MethodResult,
  type Snapshot,
  type SubmitParams,
  type TaskmillEvent,
  type WebSocketConstructor,
  connectWebSocket,
  isHistoryRecord,
  isTaskmillError,
} from "../src/index.js";
import type { SpawnedSidecar } from "../src/node.js";
import type { TauriCommandClass } from "../src/tauri.js";
import type { Command } from "@tauri-apps/plugin-shell";

declare const client: TaskmillClient;

// on(kind) narrows the event to that kind.
client.on("completed", (e) => {
  expectTypeOf(e.kind).toEqualTypeOf<"completed">();
  expectTypeOf(e.result).toBeUnknown();
  expectTypeOf(e.duration_ms).toBeNumber();
  expectTypeOf(e.task_id).toBeNumber();
  expectTypeOf(e.seq).toBeNumber();
  // @ts-expect-error: not a field of completed events
  void e.will_retry;
});
client.on("failed", (e) => {
  expectTypeOf(e.will_retry).toBeBoolean();
  expectTypeOf(e.retry_after_ms).toEqualTypeOf<number | null>();
});
client.on("group_paused", (e) => {
  expectTypeOf(e).toEqualTypeOf<EventOf<"group_paused">>();
  expectTypeOf(e.group).toBeString();
  // @ts-expect-error: scheduler events carry no task header
  void e.task_id;
});
// @ts-expect-error: not an event kind
client.on("finished", () => undefined);

// subscribe with kinds narrows to the union of those kinds.
client.subscribe({ kinds: ["progress", "completed"] }, (e) => {
  expectTypeOf(e.kind).toEqualTypeOf<"progress" | "completed">();
  if (e.kind === "progress") expectTypeOf(e.percent).toBeNumber();
  else expectTypeOf(e.result).toBeUnknown();
});

// Without kinds: every event, discriminated by kind.
client.subscribe(undefined, (e) => {
  expectTypeOf(e).toEqualTypeOf<TaskmillEvent>();
});
// With task_types: task events narrowed to those types.
client.subscribe({ task_types: ["demo::sleep"] }, (e) => {
  if ("task_type" in e) expectTypeOf(e.task_type).toEqualTypeOf<"demo::sleep">();
  switch (e.kind) {
    case "superseded":
      expectTypeOf(e.new_task_id).toBeNumber();
      break;
    case "pressure":
      expectTypeOf(e.breakdown).toEqualTypeOf<readonly { readonly source: string; readonly value: number }[]>();
      break;
    case "lagged":
      expectTypeOf(e.missed).toBeNumber();
      break;
    default:
      break;
  }
});

// The unsubscribe function carries a ready promise.
const off = client.on("lagged", () => undefined);
expectTypeOf(off).toBeFunction();
expectTypeOf(off.ready).toEqualTypeOf<Promise<void>>();

// events() yields narrowed events, plus lagged (its bounded buffer can overflow).
async function iterate(): Promise<void> {
  for await (const e of client.events({ kinds: ["dispatched"] })) {
    expectTypeOf(e.kind).toEqualTypeOf<"dispatched" | "lagged">();
    if (e.kind === "dispatched") expectTypeOf(e.attempt).toBeNumber();
    else expectTypeOf(e.missed).toBeNumber();
  }
}
void iterate;

// Priorities: numbers or names in, integers out.
expectTypeOf<SubmitParams["priority"]>().toEqualTypeOf<number | "realtime" | "high" | "normal" | "background" | "idle" | undefined>();
// @ts-expect-error: not a priority name
const badPriority: SubmitParams = { task_type: "a::b", priority: "urgent" };
void badPriority;
expectTypeOf<ActiveTaskRecord["priority"]>().toEqualTypeOf<number>();
expectTypeOf<Snapshot["running"][number]["effective_priority"]>().toEqualTypeOf<number>();

// Wire names: snake_case params; unknown params are compile errors.
expectTypeOf<MethodParams<"group.pause">>().toEqualTypeOf<{ readonly group: string; readonly duration_ms?: number }>();
// @ts-expect-error: unknown param
void client.request("task.get", { id: 1, verbose: true });
// @ts-expect-error: unknown method
void client.request("task.frobnicate", {});
expectTypeOf<MethodResult<"task.submit">>().toEqualTypeOf<import("../src/index.js").SubmitResult>();
// @ts-expect-error: rate limits need a task_type xor a group
void client.setRateLimit({ task_type: "a::b", group: "g", per_second: 1 });
// @ts-expect-error: exactOptionalPropertyTypes: undefined is not a value
void client.submit({ task_type: "a::b", key: undefined });

// Records: history narrowing.
declare const rec: import("../src/index.js").TaskRecord;
if (isHistoryRecord(rec)) {
  expectTypeOf(rec).toEqualTypeOf<HistoryTaskRecord>();
  expectTypeOf(rec.finished_at).toBeNumber();
}
if (rec.status === "pending") expectTypeOf(rec).toEqualTypeOf<ActiveTaskRecord>();
expectTypeOf(client.waitFor(1)).resolves.toEqualTypeOf<HistoryTaskRecord>();

// Errors.
declare const err: unknown;
if (isTaskmillError(err)) {
  expectTypeOf(err.code).toBeNumber();
  expectTypeOf(err.field).toEqualTypeOf<string | undefined>();
}

// The ws package fits the injected WebSocket constructor.
const ctor: WebSocketConstructor = WebSocket;
void ctor;
void connectWebSocket({ endpoint: { url: "ws://127.0.0.1:1", token: "t" }, WebSocket });
void connectWebSocket({ endpoint: async () => ({ url: "ws://127.0.0.1:1", token: null }), WebSocket, encoding: "json" });

// The plugin's Command class fits the injected Command.
declare const RealCommand: typeof Command;
const commandClass: TauriCommandClass = RealCommand;
void commandClass;

declare const sidecar: SpawnedSidecar;
expectTypeOf(sidecar.ready.transports.ws).toEqualTypeOf<{ readonly url: string; readonly token: string | null } | null>();
