/**
 * The sidecar's per-connection limits (docs/security.md): 1,000 subscriptions,
 * 1,024 requests in flight, 100,000 tasks per batch. The fake sidecar enforces
 * the first two as the real one does (-32008 limit_exceeded), so these tests
 * fail if the client crosses them: thousands of concurrent `waitFor` share
 * one subscription, and requests beyond `maxInFlight` wait in the client.
 */

import { afterEach, describe, expect, it } from "vitest";
import { TaskmillClient, type ClientOptions, type RpcRequest } from "../src/index.js";
import { FakeServer, NO_REPLY, SIDECAR_LIMITS, record, sleep, until, type FakeLink } from "./helpers.js";

const clients: TaskmillClient[] = [];

function makeClient(server: FakeServer, options: Partial<ClientOptions> = {}): TaskmillClient {
  const client = new TaskmillClient({ connector: server.connector, reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: 0 }, ...options });
  clients.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

describe("requests in flight are bounded (maxInFlight)", () => {
  /** A sidecar that answers task.get only when told to. */
  function heldServer() {
    const server = new FakeServer();
    let held: { link: FakeLink; request: RpcRequest }[] = [];
    server.handlers["task.get"] = (_params, link, request) => {
      held.push({ link, request });
      return NO_REPLY;
    };
    /** Answers the `n` oldest unanswered task.get of the open link. */
    const answer = (n: number): void => {
      held = held.filter((h) => !h.link.closed);
      for (const { link, request } of held.splice(0, n)) link.respond(request.id, record({ id: (request.params as { id: number }).id }));
    };
    const sent = (): number[] => server.last.received.flatMap((m) => ("method" in m && m.method === "task.get" ? [(m.params as { id: number }).id] : []));
    return { server, held, answer, sent };
  }

  it("by default at most 1,000 are sent; the rest wait, in order, and go out as answers come back", async () => {
    const { server, answer, sent } = heldServer();
    const client = makeClient(server);
    await client.connect();
    const all = Promise.all(Array.from({ length: 2500 }, (_, i) => client.get(i + 1)));
    await sleep(5);
    expect(sent()).toHaveLength(1000);
    answer(10);
    await sleep(1);
    expect(sent()).toEqual(Array.from({ length: 1010 }, (_, i) => i + 1));
    while (sent().length < 2500 || server.last.inFlight > 0) {
      answer(300);
      await sleep(1);
    }
    expect((await all).map((r) => r.id)).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1));
    expect(server.last.peakInFlight).toBe(1000);
    expect(server.last.received.some((m) => "error" in m)).toBe(false);
  });

  it("without the bound the sidecar refuses the excess with limit_exceeded (what the bound prevents)", async () => {
    const { server } = heldServer();
    const client = makeClient(server, { maxInFlight: Number.POSITIVE_INFINITY });
    await client.connect();
    const outcomes = Array.from({ length: SIDECAR_LIMITS.requestsInFlight + 5 }, (_, i) => settle(client.get(i + 1)));
    const refused = await Promise.all(outcomes.slice(-5));
    expect(refused.every((o) => !o.ok && (o.error as { kind: string; data: { limit: string } }).data.limit === "requests_in_flight")).toBe(true);
  });

  it("maxInFlight is configurable; a held request that times out or is aborted is never sent", async () => {
    const { server, answer, sent } = heldServer();
    const client = makeClient(server, { maxInFlight: 3 });
    await client.connect();
    const first = [1, 2, 3].map((id) => settle(client.get(id)));
    const late = settle(client.get(4, { timeoutMs: 10 }));
    const controller = new AbortController();
    const aborted = settle(client.get(5, { signal: controller.signal }));
    const last = client.get(6);
    controller.abort();
    expect(await late).toMatchObject({ ok: false, error: { kind: "timeout" } });
    expect(await aborted).toMatchObject({ ok: false, error: { kind: "aborted" } });
    expect(sent()).toEqual([1, 2, 3]);
    answer(1);
    await until(() => sent().length === 4);
    expect(sent()).toEqual([1, 2, 3, 6]);
    await sleep(1);
    answer(3);
    expect((await last).id).toBe(6);
    expect((await Promise.all(first)).every((o) => o.ok)).toBe(true);
  });

  it("a request the client gave up on still holds its slot until the sidecar answers it", async () => {
    const { server, answer, sent } = heldServer();
    const client = makeClient(server, { maxInFlight: 1 });
    await client.connect();
    expect(await settle(client.get(1, { timeoutMs: 10 }))).toMatchObject({ ok: false, error: { kind: "timeout" } });
    const second = client.get(2);
    await sleep(5);
    expect(sent()).toEqual([1]);
    answer(1); // The late answer to 1 frees the slot.
    await until(() => sent().length === 2);
    answer(1);
    expect((await second).id).toBe(2);
  });

  it("subscriptions and worker registrations go ahead of held requests", async () => {
    const { server, answer } = heldServer();
    const client = makeClient(server, { maxInFlight: 2 });
    await client.connect();
    const gets = [1, 2, 3, 4].map((id) => client.get(id));
    const off = client.on("completed", () => undefined);
    await sleep(1);
    answer(1);
    await off.ready;
    const methods = server.last.methods().filter((m) => m !== "session.hello");
    expect(methods.slice(0, 3)).toEqual(["task.get", "task.get", "events.subscribe"]);
    while (server.last.methods().filter((m) => m === "task.get").length < 4 || server.last.inFlight > 0) {
      answer(2);
      await sleep(1);
    }
    expect((await Promise.all(gets)).map((r) => r.id)).toEqual([1, 2, 3, 4]);
  });

  it("held requests were never sent: after a drop they go out on the next connection; sent ones reject", async () => {
    const { server, answer, sent } = heldServer();
    const client = makeClient(server, { maxInFlight: 2 });
    await client.connect();
    const outcomes = [1, 2, 3, 4].map((id) => settle(client.get(id)));
    await sleep(2);
    server.last.drop();
    await until(() => server.links.length === 2 && client.state === "open");
    await until(() => sent().length === 2);
    expect(sent()).toEqual([3, 4]);
    await sleep(1);
    answer(2);
    const results = await Promise.all(outcomes);
    expect(results.map((o) => o.ok)).toEqual([false, false, true, true]);
    expect(results[0]).toMatchObject({ error: { kind: "disconnected" } });
  });

  it("held requests reject with the reason when the client closes", async () => {
    const { server } = heldServer();
    const client = makeClient(server, { maxInFlight: 1 });
    await client.connect();
    const outcomes = [1, 2, 3].map((id) => settle(client.get(id)));
    await sleep(2);
    await client.close();
    for (const outcome of await Promise.all(outcomes)) expect(outcome).toMatchObject({ ok: false, error: { kind: "closed" } });
  });
});

describe("submitBatch and the 100,000 tasks limit", () => {
  it("more than 100,000 tasks reject at once, unsent, as the sidecar would (-32008, batch_length)", async () => {
    const server = new FakeServer();
    server.handlers["task.submit_batch"] = (params) => ({ outcomes: (params["tasks"] as unknown[]).map((_, i) => ({ outcome: "inserted", id: i + 1 })) });
    const client = makeClient(server);
    await client.connect();
    const tasks = Array.from({ length: 100_001 }, (_, i) => ({ task_type: "demo::echo", payload: i }));
    const error: unknown = await client.submitBatch(tasks).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: -32008,
      kind: "limit_exceeded",
      field: "tasks",
      method: "task.submit_batch",
      data: { limit: "batch_length", max: 100_000 },
    });
    expect(server.last.methods()).not.toContain("task.submit_batch");
    expect(await client.submitBatch(tasks.slice(0, 100_000))).toHaveLength(100_000);
  });
});
