import { describe, expect, it } from "vitest";
import { JsonLinesDecoder, createLineTransport, type TransportSink } from "../src/index.js";
import { ReadyGate } from "../src/supervisor.js";
import { sleep } from "./helpers.js";

function decoder(mode?: "stream" | "lines") {
  const values: unknown[] = [];
  const errors: string[] = [];
  const d = new JsonLinesDecoder(
    (v) => values.push(v),
    (e) => errors.push(e.message),
    mode === undefined ? {} : { mode },
  );
  return { d, values, errors };
}

describe("JsonLinesDecoder (stream mode)", () => {
  it("joins a line split across chunks, anywhere", () => {
    const line = '{"jsonrpc":"2.0","method":"event","params":{"kind":"progress","message":"caf\u00e9 \u2603"}}\n';
    for (let cut = 1; cut < line.length; cut += 7) {
      const { d, values } = decoder();
      d.push(line.slice(0, cut));
      expect(values).toEqual([]);
      d.push(line.slice(cut));
      expect(values).toHaveLength(1);
    }
  });

  it("splits coalesced lines and handles \\r\\n, lone \\r and empty fragments", () => {
    const { d, values, errors } = decoder();
    d.push('{"a":1}\r\n{"b":2}\n\n\r\n{"c":3}\r{"d":');
    d.push("");
    d.push('4}\r');
    d.push("\n");
    expect(values).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }, { d: 4 }]);
    expect(errors).toEqual([]);
  });

  it("decodes UTF-8 bytes split inside a multi-byte character", () => {
    const { d, values } = decoder();
    const bytes = new TextEncoder().encode('{"m":"\u00e9\u2603\ud83d\ude00"}\n');
    for (const b of bytes) d.push(new Uint8Array([b]));
    expect(values).toEqual([{ m: "\u00e9\u2603\ud83d\ude00" }]);
  });

  it("reports a non-JSON line and keeps going", () => {
    const { d, values, errors } = decoder();
    d.push('Traceback (most recent call last):\n{"ok":true}\n');
    expect(values).toEqual([{ ok: true }]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/not a JSON line: Traceback/);
  });

  it("waits for the terminator even if the tail looks complete", () => {
    const { d, values } = decoder();
    d.push('{"a":1}');
    expect(values).toEqual([]);
    d.end();
    expect(values).toEqual([{ a: 1 }]);
  });
});

describe("JsonLinesDecoder (lines mode, Tauri)", () => {
  it("takes an unterminated complete line at once", () => {
    const { d, values } = decoder("lines");
    d.push('{"a":1}');
    expect(values).toEqual([{ a: 1 }]);
    d.push(""); // The empty fragment after \r\n.
    d.push('{"b":2}\r');
    d.push("\n");
    expect(values).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it("still joins a line that arrives split", () => {
    const { d, values } = decoder("lines");
    d.push('{"a":{"b":1}');
    expect(values).toEqual([]);
    d.push("}");
    expect(values).toEqual([{ a: { b: 1 } }]);
  });

  it("splits coalesced lines", () => {
    const { d, values } = decoder("lines");
    d.push('{"a":1}\r\n{"b":2}\r\n{"c":3}');
    expect(values).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }]);
  });
});

function sink() {
  const messages: unknown[] = [];
  const errors: Error[] = [];
  const closes: (Error | undefined)[] = [];
  const s: TransportSink = {
    message: (m) => messages.push(m),
    protocolError: (e) => errors.push(e),
    close: (e) => closes.push(e),
  };
  return { s, messages, errors, closes };
}

describe("createLineTransport", () => {
  it("writes one JSON line per message", () => {
    const { s } = sink();
    const written: string[] = [];
    const lt = createLineTransport(s, { write: (t) => void written.push(t), end: () => undefined });
    lt.transport.send({ jsonrpc: "2.0", id: 1, method: "sidecar.info", params: {} });
    lt.transport.send({ jsonrpc: "2.0", method: "worker.progress", params: { task_id: 1, percent: 0.5, message: "a\nb" } });
    expect(written).toEqual([
      '{"jsonrpc":"2.0","id":1,"method":"sidecar.info","params":{}}\n',
      '{"jsonrpc":"2.0","method":"worker.progress","params":{"task_id":1,"percent":0.5,"message":"a\\nb"}}\n',
    ]);
  });

  it("keeps order with async writes, coalescing what queued meanwhile", async () => {
    const { s } = sink();
    const written: string[] = [];
    const lt = createLineTransport(s, {
      write: async (t) => {
        await sleep(5);
        written.push(t);
      },
      end: () => undefined,
    });
    for (let i = 1; i <= 4; i++) lt.transport.send({ jsonrpc: "2.0", id: i, method: "m" });
    await sleep(30);
    expect(written).toHaveLength(2);
    expect(written.join("").trim().split("\n").map((l) => (JSON.parse(l) as { id: number }).id)).toEqual([1, 2, 3, 4]);
  });

  it("closes once, ends the writer, and refuses to send afterwards", () => {
    const { s, closes } = sink();
    let ended = 0;
    const lt = createLineTransport(s, { write: () => undefined, end: () => void ended++ });
    lt.transport.close();
    lt.closed(new Error("exit"));
    expect(ended).toBe(1);
    expect(closes).toEqual([undefined]);
    expect(() => lt.transport.send({ jsonrpc: "2.0", id: 1, method: "m" })).toThrow(expect.objectContaining({ kind: "disconnected" }) as unknown as Error);
  });

  it("a failed async write closes the transport", async () => {
    const { s, closes } = sink();
    const lt = createLineTransport(s, { write: () => Promise.reject(new Error("EPIPE")), end: () => undefined });
    lt.transport.send({ jsonrpc: "2.0", id: 1, method: "m" });
    await sleep(1);
    expect(closes[0]?.message).toBe("EPIPE");
  });
});

describe("ReadyGate", () => {
  const ready = { jsonrpc: "2.0", method: "sidecar.ready", params: { protocol: 1, version: "0.1.0", pid: 42, transports: { stdio: true, ws: null }, db_path: "/x.db", task_types: [] } };

  it("resolves on the ready line, then forwards", async () => {
    const { s, messages, errors } = sink();
    const gate = new ReadyGate(s, 1000);
    gate.message({ not: "ready" });
    gate.message(ready);
    gate.message({ jsonrpc: "2.0", method: "event", params: {} });
    expect((await gate.ready).pid).toBe(42);
    expect(messages).toEqual([{ jsonrpc: "2.0", method: "event", params: {} }]);
    expect(errors).toHaveLength(1);
  });

  it("rejects when the process exits first, with the stderr tail", async () => {
    const { s } = sink();
    const gate = new ReadyGate(s, 1000, () => "; stderr: cannot open database");
    gate.close(new Error("the sidecar exited with code 2"));
    await expect(gate.ready).rejects.toMatchObject({ kind: "connect_failed", message: expect.stringContaining("cannot open database") as unknown });
  });

  it("rejects on timeout and on another protocol version", async () => {
    const a = new ReadyGate(sink().s, 10);
    await expect(a.ready).rejects.toMatchObject({ kind: "connect_failed" });
    const b = new ReadyGate(sink().s, 1000);
    b.message({ ...ready, params: { ...ready.params, protocol: 2 } });
    await expect(b.ready).rejects.toMatchObject({ kind: "protocol_error" });
  });
});
