/**
 * The client's life cycle: when it gives up (reconnect off or exhausted,
 * unauthorized, protocol_error, close(), shutdown()), every pending
 * operation settles at once with a TaskmillError of a stable kind.
 */

import { afterEach, describe, expect, it } from "vitest";
import {
  TaskFailedError,
  TaskmillClient,
  isTaskFailedError,
  isTaskmillError,
  type ClientOptions,
  type ConnectionEvent,
  type EventOf,
  type HistoryTaskRecord,
} from "../src/index.js";
import { FakeServer, NO_REPLY, RpcErrorReply, historyRecord, record, sleep, taskEvent, until } from "./helpers.js";

const clients: TaskmillClient[] = [];

function makeClient(server: FakeServer, options: Partial<ClientOptions> = {}): TaskmillClient {
  const client = new TaskmillClient({ connector: server.connector, reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: 0 }, ...options });
  clients.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** Settles `promise` into `{ ok, value | error }` without an unhandled rejection. */
function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/**
 * Opens a client with one of each pending operation: a request in flight, a
 * waitFor and a run() on a task that never ends, an events() iterator
 * waiting for its next item, a subscription and a worker registration.
 */
async function withPendingWork(server: FakeServer, options: Partial<ClientOptions> = {}) {
  server.handlers["task.get"] = (params) => record({ id: params["id"], status: "running" });
  server.handlers["task.submit"] = () => ({ outcome: "inserted", id: 42 });
  server.handlers["scheduler.metrics"] = () => NO_REPLY;
  const client = makeClient(server, options);
  await client.connect();
  const inflight = settle(client.metrics());
  const waitFor = settle(client.waitFor(7));
  const run = settle(client.run({ task_type: "demo::sleep", payload: { ms: 1e6 } }));
  const stream = client.events({ kinds: ["completed"] });
  await stream.ready;
  const next = settle(stream.next());
  await until(() => server.last.methods().filter((m) => m === "task.get").length === 2);
  await server.last.request("scheduler.metrics");
  return { client, inflight, waitFor, run, stream, next };
}

async function expectAllSettled(
  work: Awaited<ReturnType<typeof withPendingWork>>,
  kind: string,
  extra: { inflightKind?: string } = {},
): Promise<void> {
  for (const [name, outcome] of [
    ["in-flight request", await work.inflight],
    ["waitFor", await work.waitFor],
    ["run", await work.run],
    ["events().next()", await work.next],
  ] as const) {
    expect(outcome.ok, name).toBe(false);
    if (outcome.ok) continue;
    expect(isTaskmillError(outcome.error), `${name} rejects with a TaskmillError`).toBe(true);
    expect((outcome.error as { kind: string }).kind, name).toBe(name === "in-flight request" ? (extra.inflightKind ?? kind) : kind);
  }
  expect(await work.stream.next()).toEqual({ value: undefined, done: true });
  expect(work.client.state).toBe("closed");
  expect((await work.client.closed()).kind).toBe(kind);
}

describe("giving up settles everything", () => {
  it("reconnect: false, the connection drops: kind disconnected", async () => {
    const server = new FakeServer();
    const work = await withPendingWork(server, { reconnect: false });
    server.last.drop(new Error("the sidecar was killed by SIGKILL"));
    await expectAllSettled(work, "disconnected");
    expect((await work.client.closed()).message).toContain("SIGKILL");
    expect(server.links).toHaveLength(1);
  });

  it("reconnect.maxAttempts exhausted: kind disconnected, requests queued meanwhile too", async () => {
    const server = new FakeServer();
    const work = await withPendingWork(server, { reconnect: { initialDelayMs: 2, maxAttempts: 3, jitter: 0 } });
    server.failConnects = 100;
    server.last.drop();
    const queued = settle(work.client.info());
    await expectAllSettled(work, "disconnected");
    const outcome = await queued;
    expect(outcome.ok === false && (outcome.error as { kind: string }).kind).toBe("disconnected");
    expect(100 - server.failConnects).toBe(3);
  });

  it("a reconnect refused as unauthorized is not retried: kind unauthorized everywhere", async () => {
    const server = new FakeServer();
    const work = await withPendingWork(server);
    const attempts: ConnectionEvent[] = [];
    work.client.onConnection((e) => e.type === "connecting" && attempts.push(e));
    server.handlers["session.hello"] = () => {
      throw new RpcErrorReply(-32001, "wrong token", { kind: "unauthorized" });
    };
    server.last.drop();
    const queued = settle(work.client.info({ timeoutMs: 60_000 }));
    await expectAllSettled(work, "unauthorized", { inflightKind: "disconnected" });
    const outcome = await queued;
    expect(outcome.ok === false && outcome.error).toMatchObject({ kind: "unauthorized", code: -32001, method: "sidecar.info" });
    expect(attempts).toHaveLength(1);
    await sleep(30);
    expect(server.links).toHaveLength(2);
  });

  it("a refused token the connector can renew (Connection.refused) is renewed, 3 times in a row at most; queued requests wait", async () => {
    const server = new FakeServer();
    const refusals: unknown[] = [];
    let refuse = 0;
    server.handlers["session.hello"] = () => {
      if (refuse > 0) {
        refuse -= 1;
        throw new RpcErrorReply(-32001, "wrong token", { kind: "unauthorized" });
      }
      return { protocol: 1, version: "0.0.0-test", session: "s" };
    };
    const client = makeClient(server, {
      connector: async (sink, signal) => ({ ...(await server.connector(sink, signal)), refused: (error) => void refusals.push(error) }),
    });
    await client.connect();
    const events: ConnectionEvent[] = [];
    client.onConnection((e) => events.push(e));
    // Refused twice, then accepted: one reconnect attempt, three connections.
    refuse = 2;
    server.handlers["sidecar.info"] = () => ({ protocol: 1 });
    server.last.drop();
    const queued = client.info({ timeoutMs: 60_000 });
    await until(() => events.some((e) => e.type === "resync"));
    expect(await queued).toEqual({ protocol: 1 });
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toMatchObject({ kind: "unauthorized", code: -32001, method: "session.hello" });
    expect(events.filter((e) => e.type === "connecting")).toEqual([
      { type: "connecting", attempt: 1 },
      { type: "connecting", attempt: 1 },
      { type: "connecting", attempt: 1 },
    ]);
    // Refused every time: 1 + 3 renewals, then the refusal ends the client (the default policy).
    refuse = 100;
    refusals.length = 0;
    const links = server.links.length;
    server.last.drop();
    expect(await client.closed()).toMatchObject({ kind: "unauthorized", code: -32001 });
    expect(server.links.length - links).toBe(4);
    expect(refusals).toHaveLength(3);
  });

  it("a reconnect that meets another protocol version is not retried: kind protocol_error", async () => {
    const server = new FakeServer();
    const work = await withPendingWork(server);
    server.handlers["session.hello"] = () => ({ protocol: 2, version: "9", session: "x" });
    server.last.drop();
    await expectAllSettled(work, "protocol_error", { inflightKind: "disconnected" });
    expect(server.links).toHaveLength(2);
  });

  it("reconnect.shouldRetry can retry unauthorized (a token that will change)", async () => {
    const server = new FakeServer();
    let refuse = 2;
    const seen: string[] = [];
    const client = makeClient(server, {
      reconnect: {
        initialDelayMs: 1,
        jitter: 0,
        shouldRetry: (error, attempt) => {
          seen.push(`${error.kind}@${attempt}`);
          return attempt < 5;
        },
      },
    });
    await client.connect();
    server.handlers["session.hello"] = () => {
      if (refuse-- > 0) throw new RpcErrorReply(-32001, "wrong token", { kind: "unauthorized" });
      return { protocol: 1, version: "1", session: "s" };
    };
    server.last.drop();
    await client.connect();
    expect(client.state).toBe("open");
    expect(seen).toEqual(["disconnected@0", "unauthorized@1", "unauthorized@2"]);
  });

  it("close(): kind closed everywhere; connect() and new requests reject with it", async () => {
    const server = new FakeServer();
    const work = await withPendingWork(server);
    await work.client.close();
    await expectAllSettled(work, "closed");
    await expect(work.client.connect()).rejects.toMatchObject({ kind: "closed" });
    await expect(work.client.info()).rejects.toMatchObject({ kind: "closed", method: "sidecar.info" });
    await expect(work.client.waitFor(1)).rejects.toMatchObject({ kind: "closed" });
    await expect(work.client.work("a::b", () => null)).rejects.toMatchObject({ kind: "closed" });
    await expect(work.client.subscribe(undefined, () => undefined).ready).rejects.toMatchObject({ kind: "closed" });
  });

  it("a worker registration waiting for the connection rejects when the client gives up", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { reconnect: { initialDelayMs: 1, maxAttempts: 1, jitter: 0 } });
    await client.connect();
    server.failConnects = 10;
    server.last.drop();
    await expect(client.work("a::b", () => null)).rejects.toMatchObject({ kind: "disconnected", method: "worker.register" });
  });

  it("a subscription not yet confirmed rejects its ready promise with the reason", async () => {
    const server = new FakeServer();
    const client = makeClient(server, { reconnect: false });
    await client.connect();
    server.handlers["events.subscribe"] = () => NO_REPLY;
    const off = client.on("completed", () => undefined);
    await server.last.request("events.subscribe");
    server.last.drop();
    await expect(off.ready).rejects.toMatchObject({ kind: "disconnected" });
  });
});

describe("shutdown()", () => {
  it("ends the client instead of reconnecting when the sidecar goes away", async () => {
    const server = new FakeServer();
    server.handlers["sidecar.shutdown"] = (_params, link) => {
      setTimeout(() => link.drop(new Error("the sidecar exited with code 0")), 5);
      return {};
    };
    const client = makeClient(server);
    const pending = settle(client.waitFor(3));
    server.handlers["task.get"] = () => record({ id: 3, status: "running" });
    await client.connect();
    await client.shutdown({ mode: "graceful", drainTimeoutMs: 500 });
    expect((await server.last.request("sidecar.shutdown")).params).toEqual({ mode: "graceful", timeout_ms: 500 });
    const reason = await client.closed();
    expect(reason).toMatchObject({ kind: "closed", message: expect.stringContaining("shut down") as unknown });
    const outcome = await pending;
    expect(outcome.ok === false && outcome.error).toMatchObject({ kind: "closed" });
    await sleep(30);
    expect(server.links).toHaveLength(1);
  });

  it("a refused shutdown keeps the client reconnecting", async () => {
    const server = new FakeServer();
    server.handlers["sidecar.shutdown"] = () => {
      throw new RpcErrorReply(-32006, "already draining", { kind: "shutting_down" });
    };
    const client = makeClient(server);
    await client.connect();
    await expect(client.shutdown()).rejects.toMatchObject({ kind: "shutting_down" });
    server.last.drop();
    await until(() => server.links.length === 2 && client.state === "open");
  });
});

describe("waitFor across a sidecar going away", () => {
  it("a task.get refused with shutting_down is not final: the resync after the restart decides", async () => {
    const server = new FakeServer();
    let phase: "draining" | "back" = "draining";
    server.handlers["task.get"] = () => {
      if (phase === "draining") throw new RpcErrorReply(-32006, "the sidecar is shutting down", { kind: "shutting_down" });
      return historyRecord({ id: 8, status: "completed", result: 1 });
    };
    const client = makeClient(server);
    await client.connect();
    const waiting = settle(client.waitFor(8));
    await until(() => server.last.methods().includes("task.get"));
    await sleep(5);
    phase = "back";
    server.last.drop();
    const outcome = await waiting;
    expect(outcome).toMatchObject({ ok: true, value: { id: 8, status: "completed" } });
  });
});

describe("every rejection is a TaskmillError", () => {
  it("a connector that throws a plain Error gives kind connect_failed with the error as cause", async () => {
    const cause = new SyntaxError("The URL 'nope' is invalid.");
    const client = new TaskmillClient({
      connector: () => {
        throw cause;
      },
    });
    clients.push(client);
    const error: unknown = await client.connect().catch((e: unknown) => e);
    expect(isTaskmillError(error)).toBe(true);
    expect(error).toMatchObject({ kind: "connect_failed", code: 0 });
    expect((error as Error).cause).toBe(cause);
    expect(client.state).toBe("disconnected");
  });

  it("params the encoder refuses (a bigint, a cycle) reject with invalid_request and the encoder's error as cause", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    server.last.transport.send = () => {
      throw new TypeError("Do not know how to serialize a BigInt");
    };
    const error: unknown = await client.submit({ task_type: "a::b", payload: { n: 1n } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "invalid_request", code: -32600, method: "task.submit" });
    expect((error as Error).cause).toBeInstanceOf(TypeError);
    expect(client.state).toBe("open");
  });

  it("maps -32008 to kind limit_exceeded and keeps data.limit/max", async () => {
    const server = new FakeServer();
    server.handlers["events.subscribe"] = () => {
      throw new RpcErrorReply(-32008, "too many subscriptions", { limit: "subscriptions", max: 64 });
    };
    const client = makeClient(server);
    await client.connect();
    await expect(client.on("completed", () => undefined).ready).rejects.toMatchObject({
      code: -32008,
      kind: "limit_exceeded",
      data: { limit: "subscriptions", max: 64 },
    });
  });
});

describe("events() buffer and lagged", () => {
  it("a consumer that falls behind gets one lagged item in place of the dropped events", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const stream = client.events({ kinds: ["progress"] }, { bufferSize: 3 });
    await stream.ready;
    for (let seq = 1; seq <= 10; seq++) server.last.notify("event", taskEvent("progress", 1, { seq, percent: seq / 10, message: null, reported: true }));
    const items: { kind: string; seq: number; missed?: number }[] = [];
    for (let i = 0; i < 4; i++) {
      const { value } = await stream.next();
      if (value !== undefined) items.push(value.kind === "lagged" ? { kind: value.kind, seq: value.seq, missed: value.missed } : { kind: value.kind, seq: value.seq });
    }
    expect(items).toEqual([
      { kind: "progress", seq: 1 },
      { kind: "progress", seq: 2 },
      { kind: "progress", seq: 3 },
      { kind: "lagged", seq: 10, missed: 7 },
    ]);
    // Room again: new events flow.
    server.last.notify("event", taskEvent("progress", 1, { seq: 11, percent: 1, message: null, reported: true }));
    expect((await stream.next()).value).toMatchObject({ kind: "progress", seq: 11 });
    await stream.return();
  });

  it("the sidecar's lagged reaches on()/subscribe() only when listed, and events() always", async () => {
    const server = new FakeServer();
    const client = makeClient(server);
    await client.connect();
    const narrow: string[] = [];
    const listed: string[] = [];
    await client.on("completed", (e) => narrow.push(e.kind)).ready;
    await client.subscribe({ kinds: ["completed", "lagged"] }, (e) => listed.push(e.kind)).ready;
    const stream = client.events({ kinds: ["completed"] });
    await stream.ready;
    for (const sub of [1, 2, 3]) server.last.notify("event", { subscription: sub, seq: 5, at: 1, kind: "lagged", missed: 12 });
    expect(narrow).toEqual([]);
    expect(listed).toEqual(["lagged"]);
    expect((await stream.next()).value).toMatchObject({ kind: "lagged", missed: 12 });
  });
});

describe("run()", () => {
  function runServer(final: Record<string, unknown>) {
    const server = new FakeServer();
    let finished = false;
    server.handlers["task.submit"] = () => ({ outcome: "inserted", id: 9 });
    server.handlers["task.get"] = () => (finished ? historyRecord({ id: 9, task_type: "demo::sleep", ...final }) : record({ id: 9, status: "running" }));
    const finish = (): void => {
      finished = true;
      server.last.notify("event", taskEvent(final["status"] === "completed" ? "completed" : "cancelled", 1, { task_id: 9, reason: "cancelled" }));
    };
    return { server, finish };
  }

  it("resolves with the result of a completed task", async () => {
    const { server, finish } = runServer({ status: "completed", result: { slept_ms: 5 } });
    const client = makeClient(server);
    await client.connect();
    const running = client.run({ task_type: "demo::sleep", payload: { ms: 5 } });
    await until(() => server.last.methods().includes("task.get"));
    finish();
    expect(await running).toEqual({ slept_ms: 5 });
    expect((await server.last.request("task.submit")).params).toEqual({ task_type: "demo::sleep", payload: { ms: 5 } });
  });

  for (const status of ["failed", "dead_letter", "cancelled", "superseded", "expired", "dependency_failed"]) {
    it(`rejects with TaskFailedError carrying the record when the task ends ${status}`, async () => {
      const { server, finish } = runServer({ status, last_error: "boom", traceback: "Traceback (most recent call last): ..." });
      const client = makeClient(server);
      await client.connect();
      const running = client.run({ task_type: "demo::sleep", payload: { ms: 5 } });
      await until(() => server.last.methods().includes("task.get"));
      finish();
      const error: unknown = await running.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(isTaskFailedError(error)).toBe(true);
      expect(isTaskmillError(error)).toBe(true);
      const failure = error as TaskFailedError;
      expect(failure.kind).toBe("task_failed");
      expect(failure.status).toBe(status);
      expect(failure.record).toMatchObject({ id: 9, status, last_error: "boom", traceback: expect.stringContaining("Traceback") as unknown });
      expect(failure.message).toContain(`ended ${status}: boom`);
    });
  }

  it("rejects with the submission's error when the sidecar refuses the task", async () => {
    const server = new FakeServer();
    server.handlers["task.submit"] = () => {
      throw new RpcErrorReply(-32003, "unknown task type nope::x", { kind: "unknown_task_type", field: "task_type" });
    };
    const client = makeClient(server);
    await client.connect();
    await expect(client.run({ task_type: "nope::x" })).rejects.toMatchObject({ kind: "unknown_task_type", method: "task.submit" });
  });
});

describe("options objects", () => {
  it("snapshot, pauseGroup, recurringList, tagValues, tagKeys and shutdown take one options object (old forms still work)", async () => {
    const server = new FakeServer();
    server.hello = false;
    const calls: [string, unknown][] = [];
    const answers: Record<string, unknown> = {
      "scheduler.snapshot": { running: [] },
      "group.pause": { pending: 0, running: 0 },
      "recurring.list": { schedules: [] },
      "tags.values": { values: [] },
      "tags.keys": { keys: [] },
      "sidecar.shutdown": {},
    };
    for (const method of Object.keys(answers)) {
      server.handlers[method] = (params) => {
        calls.push([method, params]);
        return answers[method];
      };
    }
    const client = makeClient(server);
    await client.connect();
    const controller = new AbortController();
    await client.snapshot({ domain: "media", signal: controller.signal });
    await client.snapshot("media");
    await client.snapshot();
    await client.pauseGroup("g", { durationMs: 100 });
    await client.pauseGroup("g", 100);
    await client.recurringList({ domain: "d" });
    await client.tagValues("album", { domain: "d" });
    await client.tagKeys("al", "d");
    await client.shutdown({ mode: "hard" });
    expect(calls).toEqual([
      ["scheduler.snapshot", { domain: "media" }],
      ["scheduler.snapshot", { domain: "media" }],
      ["scheduler.snapshot", {}],
      ["group.pause", { group: "g", duration_ms: 100 }],
      ["group.pause", { group: "g", duration_ms: 100 }],
      ["recurring.list", { domain: "d" }],
      ["tags.values", { key: "album", domain: "d" }],
      ["tags.keys", { prefix: "al", domain: "d" }],
      ["sidecar.shutdown", { mode: "hard" }],
    ]);
  });

  it("tolerates unknown extra fields in records and events", async () => {
    const server = new FakeServer();
    server.handlers["task.get"] = () => historyRecord({ id: 4, status: "failed", traceback: "tb", future_field: { x: 1 } });
    const client = makeClient(server);
    await client.connect();
    const rec: HistoryTaskRecord = await client.waitFor(4);
    expect(rec.traceback).toBe("tb");
    const seen: EventOf<"failed">[] = [];
    await client.on("failed", (e) => seen.push(e)).ready;
    server.last.notify("event", taskEvent("failed", 2, { error: "x", retryable: true, will_retry: false, retry_after_ms: null, attempt: 1, traceback: "tb", extra: 1 }));
    expect(seen[0]?.traceback).toBe("tb");
  });
});
