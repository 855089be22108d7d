/**
 * The client's life cycle against the REAL Python sidecar: SIGKILL with
 * operations pending, no respawn after shutdown(), and a restart with a new
 * token. Run with `TASKMILL_PYTHON=... npm run test:integration`.
 */

import { afterEach, expect, it } from "vitest";
import WebSocket from "ws";
import { connectWebSocket, isTaskmillError, type ConnectionEvent } from "../src/index.js";
import { Sidecars, describeReal, freePort, unique, until } from "./real-sidecar.js";

describeReal("life cycle against the Python sidecar", (python) => {
  const sidecars = new Sidecars(python);
  afterEach(() => sidecars.stopAll());

  for (const transport of ["stdio", "websocket"] as const) {
    it(`SIGKILL without restart settles waitFor, events() and run() at once with kind disconnected (${transport})`, async () => {
      const sidecar = await sidecars.spawn({ restart: false });
      const client = transport === "stdio" ? sidecar.client : await sidecars.connect(sidecar, { reconnect: false });
      const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 120_000 }, key: `late-${unique()}`, run_after_ms: 120_000 });
      const waiting = client.waitFor(id).catch((e: unknown) => e);
      const running = client.run({ task_type: "demo::sleep", payload: { ms: 120_000, steps: 1 }, key: `run-${unique()}` }).catch((e: unknown) => e);
      const stream = client.events({ task_ids: [id] });
      await stream.ready;
      const next = stream.next().catch((e: unknown) => e);
      // Let run() reach its waitFor before the kill.
      await until(async () => (await client.metrics()).gauges.running === 1, 10_000, "run()'s task to start");
      sidecar.process.kill("SIGKILL");
      const outcomes = await Promise.all([waiting, running, next]);
      for (const outcome of outcomes) {
        expect(isTaskmillError(outcome)).toBe(true);
        expect(outcome).toMatchObject({ kind: "disconnected", code: 0 });
      }
      const reason = await client.closed();
      expect(reason.kind).toBe("disconnected");
      expect(client.state).toBe("closed");
      await expect(client.info()).rejects.toMatchObject({ kind: "disconnected" });
    });
  }

  it("shutdown() on a spawned client with restart on ends supervision: one spawn, exit code 0, kind closed", async () => {
    let spawns = 0;
    const sidecar = await sidecars.spawn({ restart: { initialDelayMs: 50 }, onSpawn: () => void (spawns += 1) });
    const { client } = sidecar;
    const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 60_000 }, key: `sd-${unique()}`, run_after_ms: 60_000 });
    const waiting = client.waitFor(id).catch((e: unknown) => e);
    await client.shutdown({ mode: "graceful", drainTimeoutMs: 500 });
    expect(await client.closed()).toMatchObject({ kind: "closed" });
    expect(await waiting).toMatchObject({ kind: "closed" });
    await until(() => sidecar.process.exitCode !== null, 10_000, "the sidecar to exit");
    expect(sidecar.process.exitCode).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 500)); // more than the restart delay
    expect(spawns).toBe(1);
    expect(client.state).toBe("closed");
  });

  it("after a restart with a new token: a stale token is refused once, not retried; a provider reconnects, even one that lags", async () => {
    const port = await freePort();
    const sidecar = await sidecars.spawn({ restart: { initialDelayMs: 50, maxDelayMs: 200 }, extraArgs: ["--ws-port", String(port)] });
    const first = sidecar.ready.transports.ws;
    if (first === null || first.token === null) throw new Error("no WebSocket endpoint");
    // One client keeps the token it was given; the other asks for the current one.
    const stale = sidecars.track(
      await connectWebSocket({ endpoint: { url: first.url, token: first.token }, WebSocket, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } }),
    );
    // `sidecar.ready` is the previous process's until the new one's ready line
    // is read, and the new one listens before writing it: this provider can
    // hand out the old token. The race, made certain: a provider that returns
    // the old token once more after the new ready line was read.
    const fresh = await sidecars.connect(sidecar);
    const oldPid = sidecar.ready.pid;
    let killed = false;
    let lagLeft = 1;
    const lagging = await sidecars.connect(sidecar, {
      endpoint: () => {
        const ws = sidecar.ready.transports.ws;
        if (ws === null || ws.token === null) throw new Error("the ready line has no WebSocket URL/token");
        const lag = killed && lagLeft > 0;
        if (lag && sidecar.ready.pid !== oldPid) lagLeft -= 1;
        return { url: ws.url, token: lag ? first.token : ws.token };
      },
    });
    const lagged: ConnectionEvent[] = [];
    lagging.onConnection((e) => lagged.push(e));
    const attempts: ConnectionEvent[] = [];
    stale.onConnection((e) => e.type === "connecting" && attempts.push(e));
    killed = true;
    const killedAt = Date.now();
    sidecar.process.kill("SIGKILL");
    await until(() => stale.state === "reconnecting", 10_000, "the stale client to notice");
    const queued = stale.info({ timeoutMs: 60_000 }).catch((e: unknown) => e);
    const reason = await stale.closed();
    const downMs = Date.now() - killedAt;
    expect(reason).toMatchObject({ kind: "unauthorized", code: -32001 });
    expect(await queued).toMatchObject({ kind: "unauthorized", code: -32001, method: "sidecar.info" });
    expect(sidecar.ready.pid).not.toBe(oldPid);
    expect(sidecar.ready.transports.ws?.url).toBe(first.url);
    expect(sidecar.ready.transports.ws?.token).not.toBe(first.token);
    // Attempts while the port was down failed to connect and were retried; the refusal was not.
    const attemptsAtRefusal = attempts.length;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(attempts.length).toBe(attemptsAtRefusal);
    // With backoff: the delays (50 ms x1.6 up to 200, jitter 0.5) are at least
    // 25, 40, 64, then 100 ms each. How many fit depends on how long the restart
    // took, which CPU load stretches.
    expect(attemptsAtRefusal).toBeLessThanOrEqual(4 + Math.floor(downMs / 100));
    // The clients that ask for the endpoint each time reconnect; one refusal of an old token does not end them.
    await fresh.connect();
    expect((await fresh.info()).protocol).toBe(1);
    await lagging.connect();
    expect((await lagging.info()).protocol).toBe(1);
    expect(lagLeft).toBe(0);
    expect(lagged.filter((e) => e.type === "closed" && !e.willReconnect)).toEqual([]);
  });
});
