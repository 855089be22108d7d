import { describe, expect, it } from "vitest";
import { spawnTauriSidecar, type TauriCommandClass } from "../src/tauri.js";
import { sleep, until } from "./helpers.js";

type Listener = (arg: never) => void;

class Emitter {
  readonly listeners = new Map<string, Listener[]>();
  on(event: string, listener: Listener): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }
  emit(event: string, arg: unknown): void {
    for (const l of this.listeners.get(event) ?? []) (l as (a: unknown) => void)(arg);
  }
}

/**
 * A fake of the plugin's Command: emits stdout the way the Rust side does
 * (one event per line, split on \n or \r, terminator dropped), or in raw chunks.
 */
class FakeCommand extends Emitter {
  static last: FakeCommand | null = null;
  static spawned = 0;
  readonly stdout = new Emitter();
  readonly stderr = new Emitter();
  readonly written: string[] = [];
  killed = false;
  readonly program: string;
  readonly args: string[];
  readonly options: unknown;

  constructor(program: string, args: string[], options: unknown) {
    super();
    this.program = program;
    this.args = args;
    this.options = options;
    FakeCommand.last = this;
  }

  static sidecar(program: string, args?: string | string[], options?: unknown): FakeCommand {
    return new FakeCommand(program, typeof args === "string" ? [args] : (args ?? []), options);
  }

  /** Writes stdout text as the plugin would deliver it in line mode with CRLF endings. */
  out(text: string): void {
    for (const piece of text.split(/\n|\r/)) this.stdout.emit("data", piece);
  }

  async spawn() {
    FakeCommand.spawned += 1;
    setTimeout(() => {
      this.stderr.emit("data", "starting");
      this.out(`${JSON.stringify({ jsonrpc: "2.0", method: "sidecar.ready", params: { protocol: 1, version: "0.1.0", pid: 4242, transports: { stdio: true, ws: null }, db_path: "/d.db", task_types: [] } })}\r\n`);
    }, 1);
    return {
      pid: 4242,
      write: async (data: string | number[] | Uint8Array) => {
        await sleep(1);
        const text = typeof data === "string" ? data : new TextDecoder().decode(Uint8Array.from(data));
        this.written.push(text);
        for (const line of text.split("\n").filter((l) => l.length > 0)) this.#answer(JSON.parse(line) as { id?: unknown; method: string });
      },
      kill: async () => {
        this.killed = true;
        this.emit("close", { code: null, signal: 9 });
      },
    };
  }

  #answer(msg: { id?: unknown; method: string; params?: unknown }): void {
    if (msg.method === "sidecar.info") {
      // Two answers coalesced in one event, then one split across events.
      const a = JSON.stringify({ jsonrpc: "2.0", method: "event", params: { subscription: 77, seq: 1, at: 1, kind: "paused" } });
      const b = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { version: "0.1.0", protocol: 1, db_path: "/d.db", transports: {}, task_types: [], config: {} } });
      this.stdout.emit("data", `${a}\r\n${b.slice(0, 10)}`);
      this.stdout.emit("data", b.slice(10));
      this.stdout.emit("data", "");
    } else if (msg.method === "sidecar.shutdown") {
      this.out(`${JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} })}\r\n`);
      setTimeout(() => this.emit("close", { code: 0, signal: null }), 2);
    } else if (msg.id !== undefined) {
      this.out(`${JSON.stringify({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "nope", data: { kind: "method_not_found" } } })}\r\n`);
    }
  }
}

const Command = FakeCommand as unknown as TauriCommandClass;

describe("Tauri shell plugin adapter", () => {
  it("spawns Command.sidecar, reads the ready line, and talks JSON lines", async () => {
    const stderr: string[] = [];
    const sidecar = await spawnTauriSidecar({
      program: "binaries/taskmill-sidecar",
      args: ["--stdio", "--db", "/d.db"],
      env: { TASKMILL_TOKEN: "t" },
      Command,
      onStderr: (l) => stderr.push(l),
    });
    const fake = FakeCommand.last;
    expect(fake?.program).toBe("binaries/taskmill-sidecar");
    expect(fake?.args).toEqual(["--stdio", "--db", "/d.db"]);
    expect(fake?.options).toEqual({ env: { TASKMILL_TOKEN: "t" } });
    expect(sidecar.ready.pid).toBe(4242);
    expect(sidecar.child.pid).toBe(4242);
    expect(stderr).toEqual(["starting"]);
    const info = await sidecar.client.info();
    expect(info.db_path).toBe("/d.db");
    await expect(sidecar.client.pause()).rejects.toMatchObject({ code: -32601 });
    expect(fake?.written[0]).toBe('{"jsonrpc":"2.0","id":1,"method":"sidecar.info","params":{}}\n');
    await sidecar.stop({ timeoutMs: 500 });
    expect(fake?.written.at(-1)).toContain('"method":"sidecar.shutdown"');
    expect(fake?.killed).toBe(false);
    expect(sidecar.client.state).toBe("closed");
  });

  it("kills the child when it does not exit after stop()", async () => {
    class Stubborn extends FakeCommand {
      static override sidecar(program: string, args?: string | string[], options?: unknown): Stubborn {
        return new Stubborn(program, typeof args === "string" ? [args] : (args ?? []), options);
      }
    }
    const sidecar = await spawnTauriSidecar({ program: "p", Command: Stubborn as unknown as TauriCommandClass });
    const fake = FakeCommand.last as FakeCommand;
    // Swallow the shutdown line: no close event.
    fake.written.length = 0;
    const origEmit = fake.emit.bind(fake);
    fake.emit = (event: string, arg: unknown) => {
      if (event === "close" && (arg as { code: unknown }).code === 0) return;
      origEmit(event, arg);
    };
    await sidecar.stop({ timeoutMs: 30 });
    await until(() => fake.killed);
  });

  it("fails to connect when the child closes before its ready line", async () => {
    class Dies extends FakeCommand {
      static override sidecar(program: string): Dies {
        return new Dies(program, [], undefined);
      }
      override async spawn() {
        setTimeout(() => {
          this.stderr.emit("data", "error: database is corrupt");
          this.emit("close", { code: 2, signal: null });
        }, 1);
        return { pid: 1, write: async () => undefined, kill: async () => undefined };
      }
    }
    await expect(spawnTauriSidecar({ program: "p", Command: Dies as unknown as TauriCommandClass })).rejects.toMatchObject({
      kind: "connect_failed",
      message: expect.stringContaining("database is corrupt") as unknown,
    });
  });

  it("imports the plugin dynamically when Command is not injected", async () => {
    // Outside a Tauri webview the real plugin cannot spawn: the import worked if we get that far.
    const error: unknown = await spawnTauriSidecar({ program: "binaries/x" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "connect_failed", message: expect.stringContaining("could not spawn binaries/x") as unknown });
  });
});

describe("Tauri adapter supervision (the shared supervisor)", () => {
  it("respawns a crashed sidecar, and not after shutdown()", async () => {
    FakeCommand.spawned = 0;
    const sidecar = await spawnTauriSidecar({ program: "p", Command, restart: { initialDelayMs: 5, jitter: 0 } });
    const resynced = new Promise<void>((resolve) => sidecar.client.onConnection((e) => e.type === "resync" && resolve()));
    FakeCommand.last?.emit("close", { code: null, signal: 9 });
    await resynced;
    expect(FakeCommand.spawned).toBe(2);
    await sidecar.client.shutdown();
    expect(await sidecar.client.closed()).toMatchObject({ kind: "closed" });
    await sleep(30);
    expect(FakeCommand.spawned).toBe(2);
  });

  it("stop() answers with the exit, killing a child that does not exit in time", async () => {
    const sidecar = await spawnTauriSidecar({ program: "p", Command });
    const fake = FakeCommand.last;
    // This fake never exits on its own after the shutdown request below: swallow it.
    if (fake !== null) fake.emit = ((event: string, arg: unknown) => (event === "close" && !fake.killed ? undefined : Emitter.prototype.emit.call(fake, event, arg))) as typeof fake.emit;
    const exit = await sidecar.stop({ timeoutMs: 30 });
    expect(fake?.killed).toBe(true);
    expect(exit).toEqual({ code: null, signal: 9 });
    expect(sidecar.client.state).toBe("closed");
  });
});
