/**
 * The sidecar's per-connection limits (docs/security.md): 1,000 subscriptions,
 * 1,024 requests in flight, 100,000 tasks per batch. The fake sidecar enforces
 * the first two as the real one does (-32008 limit_exceeded), so these tests
 * fail if the client crosses them: thousands of concurrent `waitFor` share
 * one subscription, and requests beyond `maxInFlight` wait in the client.
 */

import { afterEach, describe, expect, it } from "vitest";
import { TaskmillClient, type ClientOptions, type RpcRequest } from "../src/index.js";
import { FakeServer, NO_REPLY, RpcErrorReply, SIDECAR_LIMITS, historyRecord, record, sleep, taskEvent, until, type FakeLink } from "./helpers.js";

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

const TERMINAL = ["completed", "failed", "dead_lettered", "cancelled", "superseded", "expired", "dependency_failed"];

/** A sidecar whose tasks run until `finish(id)`, which also emits `completed` on every subscription of the link. */
function taskServer() {
  const server = new FakeServer();
  const finished = new Set<number>();
  const gets = new Map<number, number>();
  server.handlers["task.get"] = (params) => {
    const id = params["id"] as number;
    gets.set(id, (gets.get(id) ?? 0) + 1);
    return finished.has(id) ? historyRecord({ id, result: { n: id } }) : record({ id, status: "running" });
  };
  const finish = (link: FakeLink, ...ids: number[]): void => {
    for (const id of ids) {
      finished.add(id);
      for (const subscription of link.subscriptions) link.notify("event", taskEvent("completed", subscription, { task_id: id, duration_ms: 1, result: { n: id } }));
    }
  };
  const subscribes = (link: FakeLink): Record<string, unknown>[] =>
    link.received.flatMap((m) => ("method" in m && m.method === "events.subscribe" ? [(m.params as { filter: Record<string, unknown> }).filter] : []));
  const totalGets = (): number => [...gets.values()].reduce((a, b) => a + b, 0);
  return { server, finished, gets, totalGets, finish, subscribes };
}

describe("waitFor shares its subscriptions", () => {
  it("5,000 concurrent waitFor use one server subscription and all resolve", async () => {
    const { server, gets, finish, subscribes } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const ids = Array.from({ length: 5000 }, (_, i) => i + 1);
    const all = Promise.all(ids.map((id) => client.waitFor(id)));
    await until(() => gets.size === 5000, 5000);
    const link = server.last;
    expect(subscribes(link)).toEqual([{ kinds: TERMINAL }]);
    expect(link.subscriptions.size).toBe(1);
    finish(link, ...ids);
    const records = await all;
    expect(records.map((r) => r.id)).toEqual(ids);
    expect(records.every((r) => r.status === "completed")).toBe(true);
    // Closed when the last waiter left; never more than one at a time; the sidecar's limits held.
    await until(() => link.subscriptions.size === 0);
    expect(link.peakSubscriptions).toBe(1);
    expect(link.peakInFlight).toBeLessThanOrEqual(1000);
    expect(link.received.some((m) => "error" in m)).toBe(false);
  });

  it("5,000 concurrent run(): bounded subscriptions, every result", async () => {
    const { server, finish, subscribes } = taskServer();
    let next = 0;
    server.handlers["task.submit"] = () => ({ outcome: "inserted", id: ++next });
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const all = Promise.all(Array.from({ length: 5000 }, (_, i) => client.run({ task_type: "demo::echo", payload: i })));
    // Finish tasks as they are awaited, in waves, while submissions keep coming.
    let done = 0;
    while (done < 5000) {
      await sleep(1);
      const upTo = Math.min(next, done + 700);
      finish(link, ...Array.from({ length: upTo - done }, (_, i) => done + i + 1));
      done = upTo;
    }
    const results = await all;
    expect(results).toHaveLength(5000);
    expect(new Set(results.map((r) => (r as { n: number }).n)).size).toBe(5000);
    await until(() => link.subscriptions.size === 0);
    expect(link.peakSubscriptions).toBeLessThanOrEqual(4);
    expect(subscribes(link).length).toBeLessThan(100);
    expect(link.peakInFlight).toBeLessThanOrEqual(1000);
  });

  it("waiters of one turn share a subscription listing their ids; later ones get their own, up to 3; then the unfiltered one", async () => {
    const { server, finish, subscribes } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const reads = (): number => link.methods().filter((m) => m === "task.get").length;
    const waiting = [client.waitFor(1), client.waitFor(2)];
    await until(() => reads() === 2);
    waiting.push(client.waitFor(3));
    await until(() => reads() === 3);
    waiting.push(client.waitFor(4), client.waitFor(5));
    await until(() => reads() === 5);
    // A task an open subscription lists needs no new one.
    waiting.push(client.waitFor(2));
    await until(() => reads() === 6);
    waiting.push(client.waitFor(6));
    await until(() => reads() === 7);
    waiting.push(client.waitFor(7));
    await until(() => reads() === 8);
    expect(subscribes(link)).toEqual([
      { kinds: TERMINAL, task_ids: [1, 2] },
      { kinds: TERMINAL, task_ids: [3] },
      { kinds: TERMINAL, task_ids: [4, 5] },
      { kinds: TERMINAL },
    ]);
    expect(link.subscriptions.size).toBe(4);
    // Each closes when its last waiter has left.
    finish(link, 3);
    await until(() => link.subscriptions.size === 3);
    finish(link, 1, 2, 4, 5, 6, 7);
    expect((await Promise.all(waiting)).map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 2, 6, 7]);
    await until(() => link.subscriptions.size === 0);
    expect(link.peakSubscriptions).toBe(4);
  });

  it("more than 256 tasks in one turn join the one unfiltered subscription", async () => {
    const { server, gets, finish, subscribes } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const first = Promise.all(Array.from({ length: 257 }, (_, i) => client.waitFor(i + 1)));
    await until(() => gets.size === 257);
    const second = Promise.all(Array.from({ length: 300 }, (_, i) => client.waitFor(1000 + i)));
    await until(() => gets.size === 557);
    expect(subscribes(link)).toEqual([{ kinds: TERMINAL }]);
    finish(link, ...Array.from({ length: 257 }, (_, i) => i + 1), ...Array.from({ length: 300 }, (_, i) => 1000 + i));
    expect((await first).length + (await second).length).toBe(557);
    await until(() => link.subscriptions.size === 0);
  });

  it("a subscription stays open while a waiter relies on it, even when the sidecar sends its events after a later subscription's answer", async () => {
    const { server, gets, finished, subscribes } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const one = client.waitFor(1);
    await until(() => gets.get(1) === 1);
    const [first] = [...link.subscriptions];
    // Task 1 ends; its event is still queued on the first subscription when the second one is answered.
    finished.add(1);
    const two = client.waitFor(2);
    await until(() => gets.get(2) === 1);
    expect(subscribes(link)).toEqual([
      { kinds: TERMINAL, task_ids: [1] },
      { kinds: TERMINAL, task_ids: [2] },
    ]);
    // The second one's answer did not close the first: waiter 1 relies on it.
    expect(link.subscriptions.has(first as number)).toBe(true);
    const second = [...link.subscriptions].find((id) => id !== first) as number;
    expect(link.methods()).not.toContain("events.unsubscribe");
    link.notify("event", taskEvent("completed", first as number, { task_id: 1, duration_ms: 1, result: null }));
    expect((await one).id).toBe(1);
    expect(gets.get(1)).toBe(2);
    finished.add(2);
    link.notify("event", taskEvent("completed", second, { task_id: 2, duration_ms: 1, result: null }));
    expect((await two).id).toBe(2);
    await until(() => link.subscriptions.size === 0);
  });

  it("a lagged makes the waiters of that subscription read again", async () => {
    const { server, gets } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const waiting = settle(Promise.all([client.waitFor(1), client.waitFor(2)]));
    await until(() => gets.size === 2);
    const other = settle(client.waitFor(3));
    await until(() => gets.size === 3);
    const [first] = [...link.subscriptions];
    link.notify("event", { subscription: first, seq: 50, at: 1, kind: "lagged", missed: 20 });
    await until(() => gets.get(1) === 2 && gets.get(2) === 2);
    await sleep(5);
    expect(gets.get(3)).toBe(1);
    await client.close();
    await Promise.all([waiting, other]);
  });

  it("events of tasks nobody awaits, and retried failures, read nothing", async () => {
    const { server, gets } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const ids = Array.from({ length: 300 }, (_, i) => i + 1);
    const all = settle(Promise.all(ids.map((id) => client.waitFor(id))));
    await until(() => gets.size === 300);
    const sub = [...link.subscriptions][0] as number;
    link.notify("event", taskEvent("completed", sub, { task_id: 9999, duration_ms: 1, result: null }));
    link.notify("event", taskEvent("failed", sub, { task_id: 5, will_retry: true, error: "x", retryable: true, retry_after_ms: 0, attempt: 1 }));
    link.notify("event", taskEvent("superseded", sub, { task_id: 6, new_task_id: 6 }));
    await sleep(10);
    expect(gets.has(9999)).toBe(false);
    expect(gets.get(5)).toBe(1);
    expect(gets.get(6)).toBe(1);
    await client.close();
    expect(await all).toMatchObject({ ok: false, error: { kind: "closed" } });
  });

  it("after a reconnect: one subscription restored, every waiter reads again, then events resolve them", async () => {
    const { server, gets, finish, subscribes } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const ids = Array.from({ length: 2000 }, (_, i) => i + 1);
    const all = Promise.all(ids.map((id) => client.waitFor(id)));
    await until(() => gets.size === 2000);
    server.last.drop();
    await until(() => server.links.length === 2 && client.state === "open");
    const link = server.last;
    expect(subscribes(link)).toEqual([{ kinds: TERMINAL }]);
    await until(() => [...gets.values()].every((n) => n === 2), 5000);
    finish(link, ...ids.slice(0, 1000));
    // Some finished while the client was away: the resync read found them.
    finish(server.links[0] as FakeLink, ...ids.slice(1000));
    link.notify("event", { subscription: [...link.subscriptions][0], seq: 9, at: 1, kind: "lagged", missed: 1 });
    expect((await all).map((r) => r.id)).toEqual(ids);
    await until(() => link.subscriptions.size === 0);
    expect(link.peakInFlight).toBeLessThanOrEqual(1000);
  });

  it("every pending waitFor settles with the client's reason (close: closed; drop without reconnect: disconnected)", async () => {
    for (const [how, kind] of [
      ["close", "closed"],
      ["drop", "disconnected"],
    ] as const) {
      const { server, gets } = taskServer();
      const client = makeClient(server, { reconnect: false });
      await client.connect();
      const all = Array.from({ length: 1500 }, (_, i) => settle(client.waitFor(i + 1)));
      await until(() => gets.size === 1500);
      if (how === "close") await client.close();
      else server.last.drop();
      const outcomes = await Promise.all(all);
      expect(outcomes.every((o) => !o.ok && (o.error as { kind: string }).kind === kind)).toBe(true);
    }
  });

  it("a waiter that leaves (abort, timeout) keeps the subscription for the others; the last one closes it", async () => {
    const { server, finish } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const controller = new AbortController();
    const aborted = settle(client.waitFor(1, { signal: controller.signal }));
    const timedOut = settle(client.waitFor(2, { timeoutMs: 30 }));
    const stays = client.waitFor(3);
    await until(() => link.subscriptions.size === 1 && link.methods().filter((m) => m === "task.get").length === 3);
    controller.abort();
    expect(await aborted).toMatchObject({ ok: false, error: { kind: "aborted" } });
    expect(await timedOut).toMatchObject({ ok: false, error: { kind: "timeout" } });
    expect(link.subscriptions.size).toBe(1);
    finish(link, 3);
    expect((await stays).id).toBe(3);
    await until(() => link.subscriptions.size === 0);
    // An already aborted signal rejects without subscribing.
    await expect(client.waitFor(4, { signal: AbortSignal.abort() })).rejects.toMatchObject({ kind: "aborted" });
    await sleep(5);
    expect(link.methods().filter((m) => m === "events.subscribe")).toHaveLength(1);
  });

  it("a shared subscription the sidecar refuses rejects its waiters with that error; the next waitFor tries again", async () => {
    const { server, finish } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const subscribe = server.handlers["events.subscribe"];
    let refuse = true;
    server.handlers["events.subscribe"] = (params, l, request) => {
      if (refuse) throw new RpcErrorReply(-32008, "too many subscriptions", { kind: "limit_exceeded", limit: "subscriptions", max: 1000 });
      return subscribe?.(params, l, request);
    };
    const refused = await Promise.all([1, 2].map((id) => settle(client.waitFor(id))));
    for (const outcome of refused) expect(outcome).toMatchObject({ ok: false, error: { code: -32008, kind: "limit_exceeded", data: { limit: "subscriptions" } } });
    refuse = false;
    const ok = client.waitFor(1);
    await until(() => link.subscriptions.size === 1 && link.methods().filter((m) => m === "task.get").length === 1);
    finish(link, 1);
    expect((await ok).id).toBe(1);
  });

  it("a subscription refused by a sidecar shutting down is not final: the waiters settle with the client's reason", async () => {
    const { server } = taskServer();
    server.handlers["events.subscribe"] = () => {
      throw new RpcErrorReply(-32006, "the sidecar is shutting down", { kind: "shutting_down" });
    };
    server.handlers["sidecar.shutdown"] = (_params, link) => {
      setTimeout(() => link.drop(new Error("the sidecar exited with code 0")), 20);
      return {};
    };
    const client = makeClient(server);
    await client.connect();
    const waiting = settle(client.waitFor(1));
    await client.shutdown();
    await until(() => server.last.methods().includes("events.subscribe"));
    expect(await waiting).toMatchObject({ ok: false, error: { kind: "closed" } });
  });

  it("... and after the sidecar comes back, the waiters subscribe again and read their task", async () => {
    const { server, gets, finished } = taskServer();
    const subscribe = server.handlers["events.subscribe"] as NonNullable<(typeof server.handlers)["events.subscribe"]>;
    let draining = true;
    server.handlers["events.subscribe"] = (params, link, request) => {
      if (draining) throw new RpcErrorReply(-32006, "the sidecar is shutting down", { kind: "shutting_down" });
      return subscribe(params, link, request);
    };
    const client = makeClient(server);
    await client.connect();
    const waiting = settle(client.waitFor(1));
    await until(() => server.last.methods().includes("events.subscribe"));
    await sleep(5);
    expect(gets.size).toBe(0);
    draining = false;
    finished.add(1);
    server.last.drop();
    expect(await waiting).toMatchObject({ ok: true, value: { id: 1, status: "completed" } });
    expect(server.last.subscriptions.size).toBe(0);
  });

  it("a subscription the sidecar refuses fails only its own waiters; the others go on", async () => {
    const { server, finish } = taskServer();
    const client = makeClient(server);
    await client.connect();
    const link = server.last;
    const others = client.waitFor(1);
    await until(() => link.subscriptions.size === 1 && link.methods().includes("task.get"));
    const subscribe = server.handlers["events.subscribe"];
    server.handlers["events.subscribe"] = () => {
      throw new RpcErrorReply(-32008, "too many subscriptions", { kind: "limit_exceeded", limit: "subscriptions", max: 1000 });
    };
    expect(await settle(client.waitFor(2))).toMatchObject({ ok: false, error: { kind: "limit_exceeded" } });
    server.handlers["events.subscribe"] = subscribe as NonNullable<typeof subscribe>;
    finish(link, 1);
    expect((await others).id).toBe(1);
  });
});

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
