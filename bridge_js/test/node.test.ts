import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionEvent } from "../src/index.js";
import { spawnSidecar, type SpawnedSidecar } from "../src/node.js";
import { until } from "./helpers.js";

const MINI = fileURLToPath(new URL("./fixtures/mini-sidecar.mjs", import.meta.url));
const running: SpawnedSidecar[] = [];

async function start(args: string[], extra: Partial<Parameters<typeof spawnSidecar>[0]> = {}): Promise<SpawnedSidecar> {
  const sidecar = await spawnSidecar({ command: process.execPath, args: [MINI, "--stdio", ...args], ...extra });
  running.push(sidecar);
  return sidecar;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop({ timeoutMs: 2000 }).catch(() => undefined)));
});

describe("child_process line transport", () => {
  it("spawns, reads sidecar.ready and returns a connected client", async () => {
    const sidecar = await start([]);
    expect(sidecar.client.state).toBe("open");
    expect(sidecar.ready.pid).toBe(sidecar.process.pid);
    expect(sidecar.ready.transports.stdio).toBe(true);
    const info = await sidecar.client.info();
    expect(info.version).toBe("0.0.0-mini");
  });

  for (const variant of [["--chunky"], ["--crlf"], ["--chunky", "--crlf"]]) {
    it(`copes with split, coalesced and \\r\\n lines (${variant.join(" ")})`, async () => {
      const sidecar = await start(variant);
      const { client } = sidecar;
      const completed: unknown[] = [];
      await client.on("completed", (e) => completed.push(e.result)).ready;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => client.submit({ task_type: "demo::echo", payload: { i, text: "x".repeat(i * 5) } })));
      expect(results.map((r) => r.outcome)).toEqual(Array(20).fill("inserted"));
      await until(() => completed.length === 20);
      const record = await client.waitFor(results[3]?.id ?? 0);
      expect(record.result).toEqual({ i: 3, text: "x".repeat(15) });
    });
  }

  it("maps errors with their field", async () => {
    const { client } = await start([]);
    await expect(client.call("task.submit", { task_type: "demo::echo", bogus: 1 })).rejects.toMatchObject({ code: -32602, kind: "invalid_params", field: "bogus" });
  });

  it("stop() closes stdin; the sidecar exits 0", async () => {
    const sidecar = await start([]);
    running.pop();
    const exit = await sidecar.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(sidecar.client.state).toBe("closed");
  });

  it("fails with connect_failed and the stderr tail when the sidecar exits before ready", async () => {
    const error: unknown = await spawnSidecar({ command: process.execPath, args: [MINI, "--exit-before-ready"] }).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "connect_failed" });
    expect((error as Error).message).toMatch(/code 2.*cannot open database/s);
  });

  it("fails with connect_failed when the command does not exist", async () => {
    await expect(spawnSidecar({ command: "/nonexistent/taskmill-sidecar" })).rejects.toMatchObject({ kind: "connect_failed" });
  });

  it("restart: respawns after a kill, resubscribes and emits resync", async () => {
    const sidecar = await start([], { restart: { initialDelayMs: 10, jitter: 0 } });
    const { client } = sidecar;
    const events: ConnectionEvent[] = [];
    client.onConnection((e) => events.push(e));
    const completed: number[] = [];
    await client.on("completed", (e) => completed.push(e.task_id)).ready;
    const firstPid = sidecar.process.pid;
    sidecar.process.kill("SIGKILL");
    await until(() => events.some((e) => e.type === "resync"), 5000);
    expect(sidecar.process.pid).not.toBe(firstPid);
    expect(sidecar.ready.pid).toBe(sidecar.process.pid);
    const { id } = await client.submit({ task_type: "demo::echo", payload: "after restart" });
    await until(() => completed.includes(id));
  });

  it("passes env (TASKMILL_TOKEN) and reports stderr to a callback", async () => {
    const chunks: string[] = [];
    const sidecar = await start(["--ws"], { env: { TASKMILL_TOKEN: "from-env" }, stderr: (c) => chunks.push(c) });
    expect(sidecar.ready.transports.ws?.token).toBeNull();
    await until(() => chunks.join("").includes("mini sidecar starting"));
  });
});

describe("supervision (restart) and the end of it", () => {
  it("a deliberate shutdown() ends supervision: no respawn, the client closes with kind closed", async () => {
    let spawns = 0;
    const sidecar = await start([], { restart: { initialDelayMs: 10, jitter: 0 }, onSpawn: () => void (spawns += 1) });
    const { client } = sidecar;
    await client.shutdown();
    const reason = await client.closed();
    expect(reason).toMatchObject({ kind: "closed" });
    expect(client.state).toBe("closed");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(spawns).toBe(1);
    expect(sidecar.process.exitCode).toBe(0);
  });

  it("a sidecar that exits 0 on its own (stdin EOF, SIGTERM) is not respawned", async () => {
    let spawns = 0;
    const sidecar = await start([], { restart: { initialDelayMs: 10, jitter: 0 }, onSpawn: () => void (spawns += 1) });
    sidecar.process.stdin?.end();
    const reason = await sidecar.client.closed();
    expect(reason).toMatchObject({ kind: "disconnected", message: expect.stringContaining("code 0 (it was shut down)") as unknown });
    expect(spawns).toBe(1);
  });

  it("stops restarting when a respawn exits 3 (the database is in use)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bridge-node-"));
    const marker = join(dir, "in-use");
    let spawns = 0;
    try {
      const sidecar = await start(["--exit-if-exists", marker, "3"], { restart: { initialDelayMs: 10, jitter: 0 }, onSpawn: () => void (spawns += 1) });
      writeFileSync(marker, "");
      sidecar.process.kill("SIGKILL");
      const reason = await sidecar.client.closed();
      expect(reason.kind).toBe("disconnected");
      expect(reason.message).toMatch(/code 3 \(its database is in use by another sidecar\)/);
      expect(spawns).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("without restart, SIGKILL settles waitFor, run(), events() and requests with kind disconnected", async () => {
    const sidecar = await start([]);
    const { client } = sidecar;
    const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 120_000 }, run_after_ms: 120_000 });
    const waiting = client.waitFor(id).catch((e: unknown) => e);
    const running = client.run({ task_type: "demo::sleep", payload: { ms: 120_000, steps: 1 } }).catch((e: unknown) => e);
    const stream = client.events({ task_ids: [id] });
    await stream.ready;
    const next = stream.next().catch((e: unknown) => e);
    sidecar.process.kill("SIGKILL");
    for (const outcome of [await waiting, await running, await next]) expect(outcome).toMatchObject({ kind: "disconnected", code: 0 });
    expect(await client.closed()).toMatchObject({ kind: "disconnected", message: expect.stringContaining("SIGKILL") as unknown });
    await expect(client.info()).rejects.toMatchObject({ kind: "disconnected" });
  });
});
