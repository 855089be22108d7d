import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { TaskmillClient, connectWebSocket, isTaskmillError, webSocketConnector, type ConnectionEvent } from "../src/index.js";
import { spawnSidecar, type SpawnedSidecar } from "../src/node.js";
import { until } from "./helpers.js";

const MINI = fileURLToPath(new URL("./fixtures/mini-sidecar.mjs", import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function sidecarWithWs(extra: Partial<Parameters<typeof spawnSidecar>[0]> = {}): Promise<SpawnedSidecar> {
  const sidecar = await spawnSidecar({ command: process.execPath, args: [MINI, "--stdio", "--ws"], ...extra });
  cleanups.push(() => sidecar.stop({ timeoutMs: 2000 }));
  return sidecar;
}

function endpointOf(sidecar: SpawnedSidecar) {
  return () => {
    const ws = sidecar.ready.transports.ws;
    if (ws === null) throw new Error("no ws");
    return { url: ws.url, token: ws.token };
  };
}

describe("WebSocket transport (ws package)", () => {
  for (const encoding of ["msgpack", "json"] as const) {
    it(`talks ${encoding}, hello first, typed events through completion`, async () => {
      const sidecar = await sidecarWithWs();
      const client = await connectWebSocket({ endpoint: endpointOf(sidecar), WebSocket, encoding });
      cleanups.push(() => client.close());
      expect(client.session?.version).toBe("0.0.0-mini");
      const info = (await client.info()) as unknown as { now: unknown };
      // A millisecond timestamp (> 2^32) comes back as a plain number.
      expect(typeof info.now).toBe("number");
      expect(info.now as number).toBeGreaterThan(2 ** 32);
      const kinds: string[] = [];
      await client.subscribe({ kinds: ["submitted", "completed"] }, (e) => kinds.push(e.kind)).ready;
      const { id, outcome } = await client.submit({ task_type: "demo::echo", payload: { big: 2 ** 40 + 1 }, priority: "high" });
      expect(outcome).toBe("inserted");
      const record = await client.waitFor(id);
      expect(record.result).toEqual({ big: 2 ** 40 + 1 });
      expect(record.priority).toBe(64);
      expect(typeof record.created_at).toBe("number");
      await until(() => kinds.length === 2);
      expect(kinds).toEqual(["submitted", "completed"]);
    });
  }

  it("sends binary frames with binaryType arraybuffer, and text frames for json", async () => {
    const frames: { binary: boolean }[] = [];
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => wss.on("listening", resolve));
    cleanups.push(() => new Promise((resolve) => wss.close(resolve)));
    wss.on("connection", (socket) => {
      socket.on("message", (_data, isBinary) => {
        frames.push({ binary: isBinary });
        socket.close(4401, "unauthorized");
      });
    });
    const port = (wss.address() as { port: number }).port;
    for (const encoding of ["msgpack", "json"] as const) {
      const client = new TaskmillClient({ connector: webSocketConnector({ endpoint: { url: `ws://127.0.0.1:${port}`, token: "t" }, WebSocket, encoding }) });
      cleanups.push(() => client.close());
      await expect(client.connect()).rejects.toMatchObject({ kind: expect.stringMatching(/disconnected|unauthorized/) as unknown });
    }
    expect(frames).toEqual([{ binary: true }, { binary: false }]);
  });

  it("a wrong token is refused with -32001", async () => {
    const sidecar = await sidecarWithWs();
    const url = sidecar.ready.transports.ws?.url ?? "";
    await expect(connectWebSocket({ endpoint: { url, token: "wrong" }, WebSocket, reconnect: false })).rejects.toMatchObject({
      code: -32001,
      kind: "unauthorized",
    });
  });

  it("an unreachable endpoint fails with connect_failed", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => wss.on("listening", resolve));
    const port = (wss.address() as { port: number }).port;
    await new Promise((resolve) => wss.close(resolve));
    await expect(connectWebSocket({ endpoint: { url: `ws://127.0.0.1:${port}`, token: "t" }, WebSocket })).rejects.toMatchObject({ kind: "connect_failed" });
  });

  it("reconnects to a restarted sidecar's new port and token via the provider", async () => {
    const sidecar = await sidecarWithWs({ restart: { initialDelayMs: 10, jitter: 0 } });
    const client = await connectWebSocket({ endpoint: endpointOf(sidecar), WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    cleanups.push(() => client.close());
    const events: ConnectionEvent[] = [];
    client.onConnection((e) => events.push(e));
    const completed: number[] = [];
    await client.on("completed", (e) => completed.push(e.task_id)).ready;
    const firstUrl = sidecar.ready.transports.ws?.url;
    sidecar.process.kill("SIGKILL");
    await until(() => events.some((e) => e.type === "resync"), 8000);
    expect(sidecar.ready.transports.ws?.url).not.toBe(firstUrl);
    const { id } = await client.submit({ task_type: "demo::echo", payload: 1 });
    await until(() => completed.includes(id));
  });

  it("a throwing endpoint provider and an invalid URL reject with TaskmillError connect_failed, with the cause", async () => {
    const boom = new Error("IPC channel closed");
    const fromProvider: unknown = await connectWebSocket({
      endpoint: () => {
        throw boom;
      },
      WebSocket,
    }).catch((e: unknown) => e);
    expect(isTaskmillError(fromProvider)).toBe(true);
    expect(fromProvider).toMatchObject({ kind: "connect_failed", message: expect.stringContaining("IPC channel closed") as unknown });
    expect((fromProvider as Error).cause).toBe(boom);
    const fromUrl: unknown = await connectWebSocket({ endpoint: { url: "not a url", token: "t" }, WebSocket }).catch((e: unknown) => e);
    expect(isTaskmillError(fromUrl)).toBe(true);
    expect(fromUrl).toMatchObject({ kind: "connect_failed" });
    expect((fromUrl as Error).cause).toBeInstanceOf(SyntaxError);
  });

  it("without a global WebSocket and none injected, says what to do", async () => {
    const g = globalThis as { WebSocket?: unknown };
    const saved = g.WebSocket;
    delete g.WebSocket;
    try {
      await expect(connectWebSocket({ endpoint: { url: "ws://127.0.0.1:9", token: "t" } })).rejects.toThrow(/ws/);
    } finally {
      if (saved !== undefined) g.WebSocket = saved;
    }
  });
});
