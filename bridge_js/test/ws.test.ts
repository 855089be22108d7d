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

  it("a provider that still hands out the previous sidecar's token after a restart is asked again: the client reconnects", async () => {
    const sidecar = await sidecarWithWs({ restart: { initialDelayMs: 10, jitter: 0 } });
    const first = sidecar.ready.transports.ws;
    if (first === null) throw new Error("no ws");
    const oldPid = sidecar.ready.pid;
    let killed = false;
    let staleLeft = 1;
    const tokens: (string | null)[] = [];
    // The race, made certain: once the new sidecar is listening (its ready line
    // was read), the provider still returns the old token one more time.
    const endpoint = (): { url: string; token: string | null } => {
      const current = sidecar.ready.transports.ws;
      if (current === null) throw new Error("no ws");
      const stale = killed && staleLeft > 0;
      if (stale && sidecar.ready.pid !== oldPid) staleLeft -= 1;
      const chosen = stale ? first : current;
      tokens.push(chosen.token);
      return { url: current.url, token: chosen.token };
    };
    const client = new TaskmillClient({ connector: webSocketConnector({ endpoint, WebSocket }), reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    cleanups.push(() => client.close());
    await client.connect();
    const events: ConnectionEvent[] = [];
    client.onConnection((e) => events.push(e));
    killed = true;
    sidecar.process.kill("SIGKILL");
    await until(() => events.some((e) => e.type === "resync"), 8000);
    expect(staleLeft).toBe(0);
    expect(client.state).toBe("open");
    expect(tokens.at(-1)).toBe(sidecar.ready.transports.ws?.token);
    expect(tokens.at(-1)).not.toBe(first.token);
    expect(events.filter((e) => e.type === "closed" && !e.willReconnect)).toEqual([]);
    expect((await client.info()).protocol).toBe(1);
  });

  it("a provider that keeps returning the refused token: unauthorized after connectTimeoutMs, one hello only", async () => {
    const sidecar = await sidecarWithWs();
    const url = sidecar.ready.transports.ws?.url ?? "";
    let asks = 0;
    const client = new TaskmillClient({
      connector: webSocketConnector({ endpoint: () => (asks++, { url, token: "wrong" }), WebSocket, connectTimeoutMs: 300 }),
    });
    cleanups.push(() => client.close());
    const connecting: ConnectionEvent[] = [];
    client.onConnection((e) => e.type === "connecting" && connecting.push(e));
    const started = Date.now();
    const error: unknown = await client.connect().catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error).toMatchObject({ code: -32001, kind: "unauthorized", message: expect.stringContaining("still returned it") as unknown });
    expect((error as Error).cause).toMatchObject({ kind: "unauthorized", method: "session.hello" });
    expect(asks).toBeGreaterThan(2);
    // The refused token opened one connection; the second attempt never opened a socket.
    expect(connecting).toHaveLength(2);
    expect(client.state).toBe("disconnected");
  });

  it("a provider whose every token is refused: at most 4 hellos in a row, then unauthorized from the sidecar", async () => {
    const sidecar = await sidecarWithWs();
    const url = sidecar.ready.transports.ws?.url ?? "";
    let asks = 0;
    const client = new TaskmillClient({ connector: webSocketConnector({ endpoint: () => ({ url, token: `wrong-${asks++}` }), WebSocket }) });
    cleanups.push(() => client.close());
    const error: unknown = await client.connect().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: -32001, kind: "unauthorized", method: "session.hello" });
    expect(asks).toBe(4);
  });

  it("close() while the provider is asked again for another token ends the wait at once", async () => {
    const sidecar = await sidecarWithWs();
    const url = sidecar.ready.transports.ws?.url ?? "";
    const client = new TaskmillClient({ connector: webSocketConnector({ endpoint: () => ({ url, token: "wrong" }), WebSocket, connectTimeoutMs: 60_000 }) });
    const connecting: ConnectionEvent[] = [];
    client.onConnection((e) => e.type === "connecting" && connecting.push(e));
    const outcome = client.connect().catch((e: unknown) => e);
    await until(() => connecting.length === 2, 5000);
    const started = Date.now();
    await client.close();
    expect(await outcome).toMatchObject({ kind: "closed" });
    expect(Date.now() - started).toBeLessThan(1000);
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
