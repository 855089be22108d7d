/**
 * The sidecar's per-connection limits against the REAL Python sidecar: 1,000
 * subscriptions and 1,024 requests in flight per connection. Thousands of
 * concurrent `waitFor`/`run` share one subscription, and the client keeps
 * its requests in flight under the limit. Run with
 * `TASKMILL_PYTHON=... npm run test:integration`.
 */

import { afterEach, expect, it } from "vitest";
import type { SubmitParams, TaskmillClient } from "../src/index.js";
import { Sidecars, describeReal, unique } from "./real-sidecar.js";

describeReal("per-connection limits against the Python sidecar", (python) => {
  const sidecars = new Sidecars(python);
  afterEach(() => sidecars.stopAll());

  const echoes = (n: number): SubmitParams[] => {
    const batch = unique();
    return Array.from({ length: n }, (_, i) => ({ task_type: "demo::echo", payload: { i }, key: `${batch}-${i}` }));
  };

  for (const transport of ["websocket", "stdio"] as const) {
    it(`2,000 tasks: submitBatch, then Promise.all of their waitFor (${transport})`, async () => {
      const sidecar = await sidecars.spawn({ restart: false });
      const client: TaskmillClient = transport === "stdio" ? sidecar.client : await sidecars.connect(sidecar);
      const outcomes = await client.submitBatch(echoes(2000));
      expect(outcomes.every((o) => o.outcome === "inserted")).toBe(true);
      const records = await Promise.all(outcomes.map(({ id }) => client.waitFor(id)));
      expect(records.map((r) => r.id)).toEqual(outcomes.map((o) => o.id));
      expect(records.every((r) => r.status === "completed")).toBe(true);
      expect(records.map((r) => (r.result as { i: number }).i)).toEqual(outcomes.map((_, i) => i));
    });
  }

  it("with 990 subscriptions of its own open, a client still awaits 2,000 tasks (waitFor needs at most 10 of the 1,000)", async () => {
    const sidecar = await sidecars.spawn({ restart: false });
    const client = await sidecars.connect(sidecar);
    // Subscriptions that match nothing here: they only take room.
    const offs = Array.from({ length: 990 }, (_, i) => client.subscribe({ domains: [`elsewhere-${i}`] }, () => undefined));
    await Promise.all(offs.map((off) => off.ready));
    await expect(client.subscribe({ domains: ["one-more"] }, () => undefined).ready).resolves.toBeUndefined();
    const outcomes = await client.submitBatch(echoes(2000));
    const records = await Promise.all(outcomes.map(({ id }) => client.waitFor(id)));
    expect(records.every((r) => r.status === "completed")).toBe(true);
  });

  it("1,500 concurrent run() and 3,000 concurrent get(): no limit_exceeded, every answer", async () => {
    const sidecar = await sidecars.spawn({ restart: false });
    const client = await sidecars.connect(sidecar);
    const batch = unique();
    const results = await Promise.all(
      Array.from({ length: 1500 }, (_, i) => client.run({ task_type: "demo::echo", payload: { i }, key: `${batch}-run-${i}` })),
    );
    expect(results.map((r) => (r as { i: number }).i)).toEqual(Array.from({ length: 1500 }, (_, i) => i));
    const { id } = await client.submit({ task_type: "demo::echo", payload: 1, key: `${batch}-get` });
    const records = await Promise.all(Array.from({ length: 3000 }, () => client.get(id)));
    expect(records.every((r) => r.id === id)).toBe(true);
  });
});
