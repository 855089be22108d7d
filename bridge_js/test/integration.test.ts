/**
 * Integration tests against the REAL Python sidecar, over WebSocket (the `ws`
 * package, MessagePack frames) and over stdio (child_process, JSON lines).
 *
 * Run with: TASKMILL_PYTHON=/path/to/python npm run test:integration
 * where `$TASKMILL_PYTHON -m taskmill --stdio --ws --demo --db <tmp>` starts the
 * sidecar (protocol.md section 11). Skipped, with a message, when unset.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { connectWebSocket, isTaskmillError, type ConnectionEvent, type TaskEvent, type TaskmillClient } from "../src/index.js";
import { spawnSidecar, type SpawnedSidecar } from "../src/node.js";

const PYTHON = process.env["TASKMILL_PYTHON"];
const SKIP_MESSAGE = "integration tests skipped: set TASKMILL_PYTHON to a python that can run `python -m taskmill --stdio --demo --db <tmp>`";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const unique = (): string => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

if (PYTHON === undefined || PYTHON === "") {
  console.warn(SKIP_MESSAGE);
  describe("integration with the Python sidecar", () => {
    it.skip(SKIP_MESSAGE, () => undefined);
  });
} else {
  for (const transport of ["websocket", "stdio"] as const) {
    describe(`integration with the Python sidecar over ${transport}`, () => {
      let dir: string;
      let sidecar: SpawnedSidecar;
      let client: TaskmillClient;
      const stderr: string[] = [];
      const connection: ConnectionEvent[] = [];

      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), "taskmill-bridge-it-"));
        sidecar = await spawnSidecar({
          command: PYTHON,
          args: ["-m", "taskmill", "--stdio", "--ws", "--demo", "--db", join(dir, "tasks.db")],
          stderr: (chunk) => {
            stderr.push(chunk);
            if (process.env["TASKMILL_IT_VERBOSE"] !== undefined) process.stderr.write(chunk);
          },
          restart: { initialDelayMs: 100, maxDelayMs: 1000 },
          readyTimeoutMs: 30_000,
        });
        if (transport === "websocket") {
          client = await connectWebSocket({
            endpoint: () => {
              const ws = sidecar.ready.transports.ws;
              if (ws === null || ws.token === null) throw new Error("the ready line has no WebSocket URL/token");
              return { url: ws.url, token: ws.token };
            },
            WebSocket,
            clientName: "bridge-js-it/0",
            reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
          });
        } else {
          client = sidecar.client;
        }
        client.onConnection((e) => connection.push(e));
      });

      afterAll(async () => {
        if (transport === "websocket") await client?.close();
        await sidecar?.stop({ timeoutMs: 15_000 });
        if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      });

      it("reports its ready line and info", async () => {
        expect(sidecar.ready.protocol).toBe(1);
        expect(sidecar.ready.transports.stdio).toBe(true);
        expect(sidecar.ready.transports.ws?.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+/);
        const info = await client.info();
        expect(info.protocol).toBe(1);
        expect(info.task_types.map((t) => t.task_type)).toEqual(expect.arrayContaining(["demo::sleep", "demo::echo"]));
        if (transport === "websocket") expect(client.session?.protocol).toBe(1);
      });

      it("submits and snapshots", async () => {
        const { outcome, id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 300, steps: 3 }, key: `snap-${unique()}`, priority: "high" });
        expect(outcome).toBe("inserted");
        expect(Number.isInteger(id)).toBe(true);
        const snapshot = await client.snapshot();
        expect(Array.isArray(snapshot.running)).toBe(true);
        expect(typeof snapshot.pending_count).toBe("number");
        expect(typeof snapshot.is_paused).toBe("boolean");
        expect(typeof snapshot.max_concurrency).toBe("number");
        const record = await client.get(id);
        expect(record.priority).toBe(64);
        expect(typeof record.created_at).toBe("number");
        expect(record.created_at).toBeGreaterThan(2 ** 32);
        const done = await client.waitFor(id, { timeoutMs: 20_000 });
        expect(done.status).toBe("completed");
        expect(done.result).toEqual({ slept_ms: 300 });
      });

      it("delivers typed events through completion", async () => {
        const events: TaskEvent[] = [];
        const off = client.subscribe({ task_types: ["demo::sleep"], progress_interval_ms: 0 }, (e) => {
          if ("task_id" in e) events.push(e);
        });
        await off.ready;
        const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 200, steps: 4, result: { ok: 1 } }, key: `ev-${unique()}` });
        await until(() => events.some((e) => e.task_id === id && e.kind === "completed"), 20_000, "completed event");
        await off();
        const mine = events.filter((e) => e.task_id === id);
        const kinds = mine.map((e) => e.kind);
        expect(kinds).toContain("submitted");
        expect(kinds).toContain("dispatched");
        expect(kinds).toContain("progress");
        expect(kinds.at(-1)).toBe("completed");
        for (const e of mine) {
          expect(typeof e.seq).toBe("number");
          expect(typeof e.at).toBe("number");
          expect(e.task_type).toBe("demo::sleep");
          if (e.kind === "progress") {
            expect(e.percent).toBeGreaterThanOrEqual(0);
            expect(e.percent).toBeLessThanOrEqual(1);
          }
          if (e.kind === "completed") {
            expect(e.result).toEqual({ ok: 1 });
            expect(typeof e.duration_ms).toBe("number");
          }
        }
      });

      it("cancels a running task", async () => {
        const dispatched: number[] = [];
        const off = client.on("dispatched", (e) => dispatched.push(e.task_id));
        await off.ready;
        const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 30_000, steps: 300 }, key: `cancel-${unique()}` });
        await until(() => dispatched.includes(id), 20_000, "dispatch");
        await off();
        expect(await client.cancel(id)).toBe(true);
        const record = await client.waitFor(id, { timeoutMs: 10_000 });
        expect(record.status).toBe("cancelled");
      });

      it("dedups the same key", async () => {
        const key = `dup-${unique()}`;
        const first = await client.submit({ task_type: "demo::sleep", payload: { ms: 20_000 }, key, run_after_ms: 60_000 });
        const second = await client.submit({ task_type: "demo::sleep", payload: { ms: 20_000 }, key, run_after_ms: 60_000 });
        expect(first.outcome).toBe("inserted");
        expect(second).toEqual({ outcome: "duplicate", id: first.id });
        const found = await client.lookup("demo::sleep", key);
        expect(found.where).toBe("active");
        await client.cancel(first.id);
      });

      it("rejects an unknown param with -32602 naming the field", async () => {
        const error: unknown = await client.call("task.submit", { task_type: "demo::echo", payload: {}, bogus_field: 1 }).catch((e: unknown) => e);
        expect(isTaskmillError(error)).toBe(true);
        expect(error).toMatchObject({ code: -32602, kind: "invalid_params", field: "bogus_field" });
        await expect(client.get(987_654_321)).rejects.toMatchObject({ code: -32002, kind: "not_found" });
      });

      it("runs a JS worker with progress", async () => {
        const seenTasks: number[] = [];
        const worker = await client.work(
          [{ task_type: "jsw::echo", config: {} }],
          async (task, ctx) => {
            seenTasks.push(task.id);
            ctx.progress(0.5, "half way");
            await sleep(50);
            return { echo: task.payload, attempt: ctx.attempt };
          },
          { concurrency: 2 },
        );
        expect(worker.id).not.toBeNull();
        const progress: number[] = [];
        const off = client.subscribe({ task_types: ["jsw::echo"], kinds: ["progress"], progress_interval_ms: 0 }, (e) => progress.push(e.percent));
        await off.ready;
        const { id } = await client.submit({ task_type: "jsw::echo", payload: { n: 1 }, key: `jsw-${unique()}` });
        const record = await client.waitFor(id, { timeoutMs: 20_000 });
        expect(record.status).toBe("completed");
        expect(record.result).toEqual({ echo: { n: 1 }, attempt: 1 });
        expect(seenTasks).toContain(id);
        await until(() => progress.includes(0.5), 5000, "worker progress event");
        await off();
        await worker.stop();
      });

      it("reconnects after the sidecar is killed and restarted on the same database", async () => {
        const completed: number[] = [];
        const off = client.on("completed", (e) => completed.push(e.task_id));
        await off.ready;
        const resyncsBefore = connection.filter((e) => e.type === "resync").length;
        const { id } = await client.submit({ task_type: "demo::sleep", payload: { ms: 50 }, key: `queued-${unique()}`, run_after_ms: 2500 });
        const oldPid = sidecar.ready.pid;
        sidecar.process.kill("SIGKILL");
        await until(() => connection.filter((e) => e.type === "resync").length > resyncsBefore, 30_000, "resync after restart");
        expect(sidecar.ready.pid).not.toBe(oldPid);
        expect(client.state).toBe("open");
        // The queued task survived the kill and runs on the restarted sidecar.
        const record = await client.waitFor(id, { timeoutMs: 30_000 });
        expect(record.status).toBe("completed");
        expect(record.result).toEqual({ slept_ms: 50 });
        // The subscription made before the kill was restored: new events reach it.
        const again = await client.submit({ task_type: "demo::echo", payload: { after: "restart" }, key: `after-${unique()}` });
        await until(() => completed.includes(again.id), 20_000, "a completed event through the restored subscription");
        await off();
      });
    });
  }
}
