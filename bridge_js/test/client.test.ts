import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import {
  TaskFailure,
  TaskmillClient,
  TaskmillError,
  isTaskmillError,
  type ConnectionEvent,
  type EventOf,
  type RpcRequest,
  type TaskmillEvent,
} from "../src/index.js";
import { FakeServer, NO_REPLY, RpcErrorReply, historyRecord, record, sleep, taskEvent, until } from "./helpers.js";

const clients: TaskmillClient[] = [];

function makeClient(server: FakeServer, options: Partial<ConstructorParameters<typeof TaskmillClient>[0]> = {}): TaskmillClient {
  const client = new TaskmillClient({
    connector: server.connector,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: 0 },
    ...options,
  });
  clients.push(client);
  return client;
}

function recordEvents(client: TaskmillClient): ConnectionEvent[] {
  const seen: ConnectionEvent[] = [];
  client.onConnection((e) => seen.push(e));
  return seen;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe("handshake", () => {
  it("sends session.hello first, with token, protocol 1 and client name", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { clientName: "my-app/1.2.3" });
    await client.connect();
    const first = server.last.received[0] as RpcRequest;
    expect(first.method).toBe("session.hello");
    expect(first.params).toEqual({ token: "secret", protocol: 1, client: "my-app/1.2.3" });
    expect(client.state).toBe("open");
    expect(client.session?.session).toBe("sess-1");
  });

  it("defaults the client name to taskmill-bridge/<version>", async () => {
    const server = new FakeServer();
    await makeClient(server).connect();
    expect((server.last.received[0] as RpcRequest).params).toMatchObject({ client: "taskmill-bridge/0.2.0" });
  });

  it("skips the handshake when the connector says so (stdio)", async () => {
    const server = new FakeServer();
    server.hello = false;
    const client = makeClient(server);
    await client.connect();
    expect(server.last.received).toEqual([]);
  });

  it("rejects a sidecar speaking another protocol", async () => {
    const server = new FakeServer();
    server.handlers["session.hello"] = () => ({ protocol: 2, version: "9", session: "x" });
    const client = makeClient(server);
    await expect(client.connect()).rejects.toMatchObject({ kind: "protocol_error" });
    expect(client.state).toBe("disconnected");
  });

  it("rejects connect() when the first attempt fails, and requests while disconnected fail fast", async () => {
    const server = new FakeServer();
    server.failConnects = 1;
    const client = makeClient(server);
    await expect(client.connect()).rejects.toThrow(/refused/);
    expect(client.state).toBe("disconnected");
    await expect(client.info()).rejects.toMatchObject({ kind: "disconnected", code: 0 });
    await client.connect();
    expect(client.state).toBe("open");
  });

  it("maps an unauthorized hello to a TaskmillError", async () => {
    const server = new FakeServer();
    server.handlers["session.hello"] = () => {
      throw new RpcErrorReply(-32001, "bad token", { kind: "unauthorized" });
    };
    const client = makeClient(server);
    const error: unknown = await client.connect().catch((e: unknown) => e);
    expect(isTaskmillError(error)).toBe(true);
    expect(error).toMatchObject({ code: -32001, kind: "unauthorized", method: "session.hello" });
  });
});

describe("requests", () => {
  it("correlates out-of-order responses by id", async () => {
    const server = new FakeServer();
    server.hello = false;
    server.handlers["task.get"] = () => NO_REPLY;
    const client = makeClient(server);
    await client.connect();
    const a = client.get(1);
    const b = client.get(2);
    const ra = await server.last.request("task.get");
    const rb = await server.last.request("task.get");
    expect(ra.id).not.toBe(rb.id);
    server.last.respond(rb.id, record({ id: 2 }));
    server.last.respond(ra.id, record({ id: 1 }));
    expect((await b).id).toBe(2);
    expect((await a).id).toBe(1);
  });

  it("sends the wire method and snake_case params", async () => {
    const server = new FakeServer();
    server.hello = false;
    const answers: Record<string, unknown> = {
      "group.pause": { pending: 1, running: 0 },
      "task.cancel_where": { cancelled: [1] },
      "domain.pause": { count: 2 },
    };
    const calls: [string, unknown][] = [];
    for (const method of [
      "group.pause",
      "group.set_weight",
      "group.set_min_slots",
      "group.set_limit",
      "domain.set_max_concurrency",
      "rate_limit.set",
      "rate_limit.remove",
      "pressure.set",
      "task.cancel_where",
      "domain.pause",
      "sidecar.shutdown",
      "scheduler.metrics",
    ]) {
      server.handlers[method] = (params) => {
        calls.push([method, params]);
        return answers[method] ?? {};
      };
    }
    const client = makeClient(server);
    await client.connect();
    await client.pauseGroup("s3://b", 5000);
    await client.setGroupWeight("s3://b", 2);
    await client.setGroupMinSlots("s3://b", null);
    await client.setGroupLimit("s3://b", 3);
    await client.setDomainMaxConcurrency("uploads", null);
    await client.setRateLimit({ task_type: "uploads::put", per_second: 10, burst: 20 });
    await client.removeRateLimit({ group: "s3://b" });
    await client.setPressure("call", 0.8);
    expect(await client.cancelWhere({ tag_prefix: "job." })).toEqual([1]);
    expect(await client.pauseDomain("uploads")).toBe(2);
    await client.shutdown("graceful", 2000);
    await client.stats();
    expect(calls).toEqual([
      ["group.pause", { group: "s3://b", duration_ms: 5000 }],
      ["group.set_weight", { group: "s3://b", weight: 2 }],
      ["group.set_min_slots", { group: "s3://b", value: null }],
      ["group.set_limit", { group: "s3://b", value: 3 }],
      ["domain.set_max_concurrency", { domain: "uploads", value: null }],
      ["rate_limit.set", { task_type: "uploads::put", per_second: 10, burst: 20 }],
      ["rate_limit.remove", { group: "s3://b" }],
      ["pressure.set", { source: "call", value: 0.8 }],
      ["task.cancel_where", { tag_prefix: "job." }],
      ["domain.pause", { domain: "uploads" }],
      ["sidecar.shutdown", { mode: "graceful", timeout_ms: 2000 }],
      ["scheduler.metrics", {}],
    ]);
  });

  it("times out, and ignores the late answer", async () => {
    const server = new FakeServer();
    server.hello = false;
    server.handlers["sidecar.info"] = () => NO_REPLY;
    const client = makeClient(server);
    const errors = recordEvents(client);
    await client.connect();
    const started = Date.now();
    const error: unknown = await client.info({ timeoutMs: 30 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(error).toBeInstanceOf(TaskmillError);
    expect(error).toMatchObject({ code: 0, kind: "timeout", method: "sidecar.info" });
    const req = await server.last.request("sidecar.info");
    server.last.respond(req.id, { version: "late" });
    await sleep(5);
    expect(errors.filter((e) => e.type === "error")).toEqual([]);
    expect(client.state).toBe("open");
  });

  it("uses the client-wide default timeout", async () => {
    const server = new FakeServer();
    server.hello = false;
    server.handlers["sidecar.info"] = () => NO_REPLY;
    const client = makeClient(server, { requestTimeoutMs: 20 });
    await client.connect();
    await expect(client.info()).rejects.toMatchObject({ kind: "timeout" });
  });

  it("rejects on abort, with the signal's reason as cause", async () => {
    const server = new FakeServer();
    server.hello = false;
    server.handlers["task.get"] = () => NO_REPLY;
    const client = makeClient(server);
    await client.connect();
    const controller = new AbortController();
    const pending = client.get(1, { signal: controller.signal });
    await server.last.request("task.get");
    const reason = new Error("user navigated away");
    controller.abort(reason);
    const error: unknown = await pending.catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "aborted", code: 0 });
    expect((error as Error).cause).toBe(reason);
    // Already aborted: rejected without sending.
    const before = server.last.received.length;
    await expect(client.get(2, { signal: controller.signal })).rejects.toMatchObject({ kind: "aborted" });
    expect(server.last.received.length).toBe(before);
  });

  it("maps error responses: code, kind, field, data, method", async () => {
    const server = new FakeServer();
    server.hello = false;
    server.handlers["task.submit"] = () => {
      throw new RpcErrorReply(-32602, "unknown field 'prio'", { kind: "invalid_params", field: "prio" });
    };
    server.handlers["task.get"] = () => {
      throw new RpcErrorReply(-32002, "no task 9");
    };
    const client = makeClient(server);
    await client.connect();
    const error: unknown = await client.submit({ task_type: "demo::echo" }).catch((e: unknown) => e);
    expect(isTaskmillError(error)).toBe(true);
    if (!isTaskmillError(error)) return;
    expect(error.code).toBe(-32602);
    expect(error.kind).toBe("invalid_params");
    expect(error.field).toBe("prio");
    expect(error.data).toEqual({ kind: "invalid_params", field: "prio" });
    expect(error.method).toBe("task.submit");
    expect(error.name).toBe("TaskmillError");
    expect(error.message).toContain("unknown field");
    // No data.kind: derived from the code.
    await expect(client.get(9)).rejects.toMatchObject({ code: -32002, kind: "not_found", field: undefined });
  });

  it("queues requests made while connecting and sends them once open", async () => {
    const server = new FakeServer();
    server.handlers["sidecar.info"] = () => ({ version: "1" });
    const client = makeClient(server);
    const connecting = client.connect();
    const info = client.info();
    await connecting;
    expect(await info).toEqual({ version: "1" });
    expect(server.last.methods()).toEqual(["session.hello", "sidecar.info"]);
  });

  it("rejects a message over the size limit locally", async () => {
    const { encodeJsonLine } = await import("../src/index.js");
    expect(() => encodeJsonLine({ jsonrpc: "2.0", id: 1, method: "task.submit", params: { payload: "x".repeat(200) } }, 100)).toThrow(
      expect.objectContaining({ code: -32600, kind: "invalid_request", method: "task.submit" }) as unknown as Error,
    );
  });
});

describe("errors", () => {
  it("isTaskmillError works across realms and rejects look-alikes", () => {
    const foreign: unknown = runInNewContext(`
      class TaskmillError extends Error {
        constructor() { super("no task"); this.name = "TaskmillError"; this.code = -32002; this.kind = "not_found"; }
      }
      new TaskmillError();
    `);
    expect(foreign instanceof TaskmillError).toBe(false);
    expect(isTaskmillError(foreign)).toBe(true);
    expect(isTaskmillError(new TaskmillError("x", { code: -32603 }))).toBe(true);
    expect(isTaskmillError(new Error("x"))).toBe(false);
    expect(isTaskmillError({ name: "TaskmillError", message: "x" })).toBe(false);
    expect(isTaskmillError(null)).toBe(false);
  });

  it("derives the kind from the code and keeps the cause", () => {
    const cause = new Error("root");
    const error = new TaskmillError("storage", { code: -32007, cause });
    expect(error.kind).toBe("storage_error");
    expect(error.cause).toBe(cause);
    expect(TaskmillError.fromRpc({ code: -32099, message: "?" }).kind).toBe("internal_error");
  });
});

describe("subscriptions", () => {
  it("subscribes with the filter, delivers events, unsubscribes", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const seen: TaskmillEvent[] = [];
    const off = client.subscribe({ task_types: ["demo::sleep"], progress_interval_ms: 0 }, (e) => seen.push(e));
    await off.ready;
    const req = await server.last.request("events.subscribe");
    expect(req.params).toEqual({ filter: { task_types: ["demo::sleep"], progress_interval_ms: 0 } });
    server.last.notify("event", taskEvent("completed", 1, { result: { ok: true }, duration_ms: 3 }));
    server.last.notify("event", taskEvent("completed", 99)); // another subscription: not ours
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ kind: "completed", result: { ok: true } });
    await off();
    const unsub = await server.last.request("events.unsubscribe");
    expect(unsub.params).toEqual({ subscription: 1 });
    server.last.notify("event", taskEvent("completed", 1));
    expect(seen).toHaveLength(1);
  });

  it("on(kind) subscribes to that kind only and narrows", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const results: unknown[] = [];
    const off = client.on("completed", (e: EventOf<"completed">) => results.push(e.result));
    await off.ready;
    expect((await server.last.request("events.subscribe")).params).toEqual({ filter: { kinds: ["completed"] } });
    server.last.notify("event", taskEvent("completed", 1, { result: 42, duration_ms: 1 }));
    expect(results).toEqual([42]);
  });

  it("delivers events that arrive before the subscription is confirmed", async () => {
    const server = new FakeServer();
    server.handlers["events.subscribe"] = () => NO_REPLY;
    const client = makeClient(server);
    await client.connect();
    const seen: number[] = [];
    const off = client.subscribe(undefined, (e) => seen.push(e.seq));
    const req = await server.last.request("events.subscribe");
    expect(req.params).toEqual({});
    server.last.notify("event", { ...taskEvent("submitted", 7, { outcome: "inserted" }), seq: 1 });
    server.last.notify("event", { ...taskEvent("dispatched", 7, { attempt: 1 }), seq: 2 });
    server.last.respond(req.id, { subscription: 7 });
    await off.ready;
    expect(seen).toEqual([1, 2]);
  });

  it("subscriptions made before connect() are sent during the handshake", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    const off = client.on("lagged", () => undefined);
    await client.connect();
    await off.ready;
    expect(server.last.methods()).toEqual(["session.hello", "events.subscribe"]);
  });

  it("a refused filter rejects ready and drops the subscription", async () => {
    const server = new FakeServer();
    server.handlers["events.subscribe"] = () => {
      throw new RpcErrorReply(-32602, "unknown kind", { kind: "invalid_params", field: "filter.kinds" });
    };
    const client = makeClient(server);
    await client.connect();
    const off = client.subscribe({ kinds: ["completed"] }, () => undefined);
    await expect(off.ready).rejects.toMatchObject({ field: "filter.kinds" });
  });

  it("a throwing handler is reported, not fatal", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    const events = recordEvents(client);
    await client.connect();
    const off = client.subscribe(undefined, () => {
      throw new Error("boom");
    });
    await off.ready;
    server.last.notify("event", taskEvent("completed", 1));
    expect(events.filter((e) => e.type === "error")).toHaveLength(1);
    expect(client.state).toBe("open");
  });

  it("events() iterates and unsubscribes on break", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const stream = client.events({ kinds: ["progress"] });
    await stream.ready;
    server.last.notify("event", taskEvent("progress", 1, { percent: 0.25, message: "a", reported: true }));
    server.last.notify("event", taskEvent("progress", 1, { percent: 0.5, message: "b", reported: true }));
    const seen: number[] = [];
    for await (const event of stream) {
      if (event.kind === "progress") seen.push(event.percent);
      if (seen.length === 2) break;
    }
    expect(seen).toEqual([0.25, 0.5]);
    await server.last.request("events.unsubscribe");
  });

  it("events() ends when its signal aborts", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const controller = new AbortController();
    const stream = client.events({ kinds: ["completed"] }, { signal: controller.signal });
    await stream.ready;
    const next = stream.next();
    controller.abort();
    expect(await next).toEqual({ value: undefined, done: true });
    await server.last.request("events.unsubscribe");
  });

  it("events() rejects with kind closed when the client closes, after the buffered events", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const stream = client.events();
    await stream.ready;
    server.last.notify("event", taskEvent("completed", 1, { seq: 7 }));
    await client.close();
    expect(await stream.next()).toMatchObject({ done: false, value: { seq: 7 } });
    await expect(stream.next()).rejects.toMatchObject({ kind: "closed", code: 0 });
    expect(await stream.next()).toEqual({ value: undefined, done: true });
  });
});

describe("reconnect", () => {
  it("re-handshakes, resubscribes, re-registers workers, then emits resync", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    const events = recordEvents(client);
    await client.connect();
    const seen: number[] = [];
    const off = client.subscribe({ kinds: ["completed"] }, (e) => seen.push(e.task_id));
    await off.ready;
    const worker = await client.work("jsw::echo", (task) => task.payload);
    expect(worker.id).toBe("w1");
    const first = server.last;

    first.drop(new Error("sidecar died"));
    expect(client.state).toBe("reconnecting");
    await until(() => events.some((e) => e.type === "resync"));
    const second = server.last;
    expect(second).not.toBe(first);
    expect(second.methods()).toEqual(["session.hello", "events.subscribe", "worker.register"]);
    expect((second.received[1] as RpcRequest).params).toEqual({ filter: { kinds: ["completed"] } });
    expect(worker.id).toBe("w2");

    const types = events.map((e) => e.type);
    expect(types.slice(types.indexOf("closed"))).toEqual(["closed", "connecting", "open", "resync"]);
    const closed = events.find((e) => e.type === "closed");
    expect(closed).toMatchObject({ willReconnect: true });
    expect(events.filter((e) => e.type === "open").map((e) => (e as { reconnected: boolean }).reconnected)).toEqual([false, true]);

    // Events of the new server subscription reach the same handler.
    second.notify("event", taskEvent("completed", 2, { task_id: 5 }));
    expect(seen).toEqual([5]);
    // The worker answers on the new link under its new id.
    second.push({ jsonrpc: "2.0", id: "s-1", method: "worker.execute", params: { worker: "w2", task: record({ id: 5, payload: "hi" }), attempt: 1 } });
    const answer = await second.waitFor((m) => "id" in m && m.id === "s-1" && "result" in m);
    expect(answer).toMatchObject({ result: { result: "hi" } });
  });

  it("rejects pending requests on disconnect and never replays them", async () => {
    const server = new FakeServer();
    server.handlers["task.submit"] = () => NO_REPLY;
    const client = makeClient(server);
    const events = recordEvents(client);
    await client.connect();
    const pending = client.submit({ task_type: "demo::echo", payload: 1 });
    await server.last.request("task.submit");
    server.last.drop();
    const error: unknown = await pending.catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "disconnected", code: 0 });
    await until(() => events.some((e) => e.type === "resync"));
    expect(server.last.methods()).not.toContain("task.submit");
  });

  it("sends requests made while reconnecting after the handshake", async () => {
    const server = new FakeServer();
    server.handlers["sidecar.info"] = () => ({ version: "2" });
    server.failConnects = 0;
    const client = makeClient(server, { reconnect: { initialDelayMs: 30, jitter: 0 } });
    await client.connect();
    server.last.drop();
    expect(client.state).toBe("reconnecting");
    const info = client.info();
    expect(await info).toEqual({ version: "2" });
    expect(server.last.methods()).toEqual(["session.hello", "sidecar.info"]);
  });

  it("retries with backoff after failed attempts", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    const events = recordEvents(client);
    await client.connect();
    server.failConnects = 2;
    server.last.drop();
    await until(() => events.some((e) => e.type === "resync"));
    const closed = events.filter((e): e is Extract<ConnectionEvent, { type: "closed" }> => e.type === "closed");
    expect(closed).toHaveLength(3);
    expect(closed.every((e) => e.willReconnect)).toBe(true);
    const delays = closed.map((e) => e.delayMs ?? 0);
    expect(delays[1]).toBeGreaterThan(delays[0] ?? 0);
  });

  it("gives up after maxAttempts: closed for good, queued requests reject with kind disconnected", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { reconnect: { initialDelayMs: 1, maxAttempts: 2, jitter: 0 } });
    const events = recordEvents(client);
    await client.connect();
    server.failConnects = 10;
    server.last.drop();
    const info = client.info();
    await expect(info).rejects.toMatchObject({ kind: "disconnected", method: "sidecar.info" });
    expect(client.state).toBe("closed");
    expect(await client.closed()).toMatchObject({ kind: "disconnected", message: expect.stringContaining("2 reconnect attempts") as unknown });
    expect(events.at(-1)).toMatchObject({ type: "closed", willReconnect: false });
    expect(server.failConnects).toBe(8);
  });

  it("without reconnect, a drop closes the client for good (kind disconnected)", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { reconnect: false });
    const events = recordEvents(client);
    await client.connect();
    server.last.drop(new Error("gone"));
    expect(client.state).toBe("closed");
    expect(events.at(-1)).toMatchObject({ type: "closed", willReconnect: false, error: { kind: "disconnected" } });
    const reason = await client.closed();
    expect(reason).toMatchObject({ kind: "disconnected", message: expect.stringContaining("gone") as unknown });
    await expect(client.connect()).rejects.toBe(reason);
    await expect(client.info()).rejects.toMatchObject({ kind: "disconnected", cause: reason });
  });

  it("a URL/token provider style connector is called again on each reconnect", async () => {
    const server = new FakeServer();
    let calls = 0;
    const client = makeClient(server, {
      connector: (sink, signal) => {
        calls += 1;
        return server.connector(sink, signal);
      },
    });
    await client.connect();
    server.last.drop();
    await until(() => client.state === "open" && calls === 2);
  });

  it("close() rejects pending requests with kind closed and stops reconnecting", async () => {
    const server = new FakeServer();
    server.handlers["task.get"] = () => NO_REPLY;
    const client = makeClient(server);
    await client.connect();
    const pending = client.get(1);
    await server.last.request("task.get");
    await client.close();
    await expect(pending).rejects.toMatchObject({ kind: "closed" });
    expect(client.state).toBe("closed");
    expect(server.last.closed).toBe(true);
    await expect(client.connect()).rejects.toMatchObject({ kind: "closed" });
    await expect(client.info()).rejects.toMatchObject({ kind: "closed" });
    await sleep(20);
    expect(server.links).toHaveLength(1);
  });
});

describe("workers", () => {
  async function setup(options: { cancelGraceMs?: number } = {}) {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const log: string[] = [];
    let release: (value: unknown) => void = () => undefined;
    const handle = await client.work(
      [{ task_type: "jsw::echo", config: {} }],
      async (task, ctx) => {
        log.push(`start ${task.id} attempt ${ctx.attempt}`);
        ctx.progress(0.5, "half");
        ctx.progress(7);
        ctx.io({ net_tx: 100 });
        const p = task.payload as { mode?: string } | null;
        if (p?.mode === "fail") throw new TaskFailure("nope", { retryable: false });
        if (p?.mode === "boom") throw new Error("transient");
        if (p?.mode === "wait") {
          return await new Promise((resolve, reject) => {
            release = resolve;
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason as Error));
          });
        }
        if (p?.mode === "stubborn") return await new Promise((resolve) => (release = resolve));
        return { echoed: task.payload };
      },
      { concurrency: 2, ...options },
    );
    const link = server.last;
    const execute = (id: string, taskId: number, payload: unknown): void =>
      link.push({ jsonrpc: "2.0", id, method: "worker.execute", params: { worker: "w1", task: record({ id: taskId, payload }), attempt: 1 } });
    const answer = (id: string) => link.waitFor((m) => "id" in m && m.id === id && ("result" in m || "error" in m));
    return { server, client, handle, link, log, execute, answer, release: (v: unknown) => release(v) };
  }

  it("registers with task types and concurrency", async () => {
    const { link } = await setup();
    const req = await link.request("worker.register");
    expect(req.params).toEqual({ task_types: [{ task_type: "jsw::echo", config: {} }], concurrency: 2 });
  });

  it("answers worker.execute with {result}, sending progress and io", async () => {
    const { link, execute, answer } = await setup();
    execute("s-1", 11, { x: 1 });
    expect(await answer("s-1")).toEqual({ jsonrpc: "2.0", id: "s-1", result: { result: { echoed: { x: 1 } } } });
    const notes = link.received.filter((m) => "method" in m && !("id" in m));
    expect(notes).toEqual([
      { jsonrpc: "2.0", method: "worker.progress", params: { task_id: 11, percent: 0.5, message: "half" } },
      { jsonrpc: "2.0", method: "worker.progress", params: { task_id: 11, percent: 1 } },
      { jsonrpc: "2.0", method: "worker.io", params: { net_tx: 100, task_id: 11 } },
    ]);
  });

  it("answers failures with -32010 and data.retryable", async () => {
    const { execute, answer } = await setup();
    execute("s-2", 12, { mode: "fail" });
    execute("s-3", 13, { mode: "boom" });
    expect(await answer("s-2")).toMatchObject({ error: { code: -32010, message: "nope", data: { retryable: false } } });
    expect(await answer("s-3")).toMatchObject({ error: { code: -32010, message: "transient", data: { retryable: true } } });
  });

  it("fires ctx.signal on worker.cancel; the handler's rejection is the answer", async () => {
    const { link, execute, answer } = await setup();
    execute("s-4", 14, { mode: "wait" });
    await until(() => link.received.some((m) => "method" in m && m.method === "worker.io"));
    link.notify("worker.cancel", { task_id: 14, reason: "preempted" });
    expect(await answer("s-4")).toMatchObject({ error: { code: -32010, message: "task cancelled: preempted", data: { retryable: true } } });
  });

  it("answers after the grace period when the handler ignores the cancel", async () => {
    const { link, execute, answer, handle, release } = await setup({ cancelGraceMs: 20 });
    execute("s-5", 15, { mode: "stubborn" });
    await until(() => handle.running === 1);
    link.notify("worker.cancel", { task_id: 15, reason: "cancelled" });
    expect(await answer("s-5")).toMatchObject({ error: { code: -32010, message: "task cancelled: cancelled" } });
    expect(handle.running).toBe(0);
    release("too late");
    await sleep(5);
    expect(link.received.filter((m) => "id" in m && m.id === "s-5")).toHaveLength(1);
  });

  it("spawnChild sends worker.spawn_child with the parent task id", async () => {
    const server = new FakeServer();
    server.handlers["worker.spawn_child"] = () => ({ outcome: "inserted", id: 99 });
    const client = makeClient(server);
    await client.connect();
    await client.work("jsw::parent", async (_task, ctx) => ctx.spawnChild({ task_type: "jsw::child", payload: { n: 1 } }));
    server.last.push({ jsonrpc: "2.0", id: "s-1", method: "worker.execute", params: { worker: "w1", task: record({ id: 3 }), attempt: 1 } });
    const spawn = await server.last.request("worker.spawn_child");
    expect(spawn.params).toEqual({ task_type: "jsw::child", payload: { n: 1 }, task_id: 3 });
    const answer = await server.last.waitFor((m) => "id" in m && m.id === "s-1" && "result" in m);
    expect(answer).toMatchObject({ result: { result: { outcome: "inserted", id: 99 } } });
  });

  it("stop() unregisters and waits for running tasks", async () => {
    const { link, execute, answer, handle, release } = await setup();
    execute("s-6", 16, { mode: "stubborn" });
    await until(() => handle.running === 1);
    let stopped = false;
    const stopping = handle.stop().then(() => (stopped = true));
    const unregister = await link.request("worker.unregister");
    expect(unregister.params).toEqual({ worker: "w1" });
    await sleep(5);
    expect(stopped).toBe(false);
    release("done");
    await stopping;
    expect(await answer("s-6")).toMatchObject({ result: { result: "done" } });
  });

  it("refuses execute for unknown workers and unknown methods", async () => {
    const { link } = await setup();
    link.push({ jsonrpc: "2.0", id: "s-7", method: "worker.execute", params: { worker: "w9", task: record(), attempt: 1 } });
    link.push({ jsonrpc: "2.0", id: "s-8", method: "client.nope", params: {} });
    expect(await link.waitFor((m) => "id" in m && m.id === "s-7")).toMatchObject({ error: { code: -32002 } });
    expect(await link.waitFor((m) => "id" in m && m.id === "s-8")).toMatchObject({ error: { code: -32601 } });
  });

  it("aborts running tasks when the connection drops", async () => {
    const { link, execute, handle } = await setup();
    let reason: unknown;
    execute("s-9", 17, { mode: "wait" });
    await until(() => handle.running === 1);
    link.drop();
    await until(() => handle.running === 0);
    void reason;
  });

  it("work() while reconnecting registers during the handshake", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { reconnect: { initialDelayMs: 20, jitter: 0 } });
    await client.connect();
    server.last.drop();
    const handle = await client.work("jsw::late", () => "ok");
    expect(handle.id).toBe("w1");
    expect(server.last.methods()).toEqual(["session.hello", "worker.register"]);
    await expect(makeClient(new FakeServer()).work("a::b", () => null)).rejects.toMatchObject({ kind: "disconnected" });
  });

  it("work() rejects when the sidecar refuses the registration", async () => {
    const server = new FakeServer();
    server.handlers["worker.register"] = () => {
      throw new RpcErrorReply(-32003, "unknown task type nope::x", { kind: "unknown_task_type", field: "task_types[0]" });
    };
    const client = makeClient(server);
    await client.connect();
    await expect(client.work("nope::x", () => null)).rejects.toMatchObject({ code: -32003, kind: "unknown_task_type" });
  });
});

describe("waitFor", () => {
  it("resolves at once for a task that already finished", async () => {
    const server = new FakeServer();
    server.handlers["task.get"] = () => historyRecord({ id: 4, result: "r" });
    const client = makeClient(server);
    await client.connect();
    const rec = await client.waitFor(4);
    expect(rec).toMatchObject({ id: 4, status: "completed", result: "r" });
    const sub = await server.last.request("events.subscribe");
    expect(sub.params).toEqual({
      filter: { task_ids: [4], kinds: ["completed", "failed", "dead_lettered", "cancelled", "superseded", "expired", "dependency_failed"] },
    });
  });

  it("waits for a terminal event, skipping retried failures", async () => {
    const server = new FakeServer();
    let status = "running";
    server.handlers["task.get"] = () => (status === "running" ? record({ id: 5, status: "running" }) : historyRecord({ id: 5, status }));
    const client = makeClient(server);
    await client.connect();
    let settled = false;
    const waiting = client.waitFor(5).then((r) => {
      settled = true;
      return r;
    });
    await until(() => server.last.methods().includes("task.get"));
    const gets = (): number => server.last.methods().filter((m) => m === "task.get").length;
    server.last.notify("event", taskEvent("failed", 1, { task_id: 5, will_retry: true, error: "x", retryable: true, retry_after_ms: 0, attempt: 1 }));
    await sleep(5);
    expect(gets()).toBe(1);
    status = "dead_letter";
    server.last.notify("event", taskEvent("dead_lettered", 1, { task_id: 5, error: "x", retry_count: 4 }));
    const rec = await waiting;
    expect(settled).toBe(true);
    expect(rec.status).toBe("dead_letter");
  });

  it("rejects for an unknown task", async () => {
    const server = new FakeServer();
    server.handlers["task.get"] = () => {
      throw new RpcErrorReply(-32002, "no task 8", { kind: "not_found" });
    };
    const client = makeClient(server);
    await client.connect();
    await expect(client.waitFor(8)).rejects.toMatchObject({ kind: "not_found" });
    await server.last.request("events.unsubscribe");
  });

  it("re-checks after a resync", async () => {
    const server = new FakeServer();
    let done = false;
    server.handlers["task.get"] = () => (done ? historyRecord({ id: 6 }) : record({ id: 6 }));
    const client = makeClient(server);
    await client.connect();
    const waiting = client.waitFor(6);
    await until(() => server.last.methods().includes("task.get"));
    done = true; // It completed while we were away.
    server.last.drop();
    expect((await waiting).id).toBe(6);
  });

  it("times out", async () => {
    const server = new FakeServer();
    server.handlers["task.get"] = () => record({ id: 7 });
    const client = makeClient(server);
    await client.connect();
    await expect(client.waitFor(7, { timeoutMs: 20 })).rejects.toMatchObject({ kind: "timeout" });
  });
});
