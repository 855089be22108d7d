import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as api from "../src/index.js";
import * as node from "../src/node.js";
import * as tauri from "../src/tauri.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
  type: string;
  sideEffects: boolean;
  dependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional: boolean }>;
  exports: Record<string, Record<string, string> | string>;
  files: string[];
};

describe("package", () => {
  it("is ESM only, side-effect free, with exactly one runtime dependency", () => {
    expect(pkg.type).toBe("module");
    expect(pkg.sideEffects).toBe(false);
    expect(Object.keys(pkg.dependencies)).toEqual(["@msgpack/msgpack"]);
    expect(pkg.peerDependenciesMeta["@tauri-apps/plugin-shell"]?.optional).toBe(true);
    expect(pkg.files).toContain("dist");
  });

  it("lists types first in every export condition", () => {
    for (const [path, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") continue;
      expect(Object.keys(target)[0], path).toBe("types");
    }
  });

  it("has named exports only, and VERSION matches package.json", () => {
    for (const mod of [api, node, tauri]) expect("default" in mod).toBe(false);
    expect(api.VERSION).toBe(pkg.version);
  });

  it("exports the public API", () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        "ACTIVE_STATUSES",
        "DEFAULT_MAX_MESSAGE_BYTES",
        "ErrorCode",
        "HISTORY_STATUSES",
        "JsonLinesDecoder",
        "PROTOCOL_VERSION",
        "Priority",
        "SCHEDULER_EVENT_KINDS",
        "TASK_EVENT_KINDS",
        "TERMINAL_EVENT_KINDS",
        "TaskCancelledError",
        "TaskFailure",
        "TaskmillClient",
        "TaskmillError",
        "VERSION",
        "connectWebSocket",
        "createClient",
        "createLineTransport",
        "createMsgpackDecoder",
        "createMsgpackEncoder",
        "encodeJsonLine",
        "isHistoryRecord",
        "isTaskmillError",
        "parseReady",
        "webSocketConnector",
      ].sort(),
    );
    expect(Object.keys(node).sort()).toEqual(["childProcessConnector", "spawnSidecar"]);
    expect(Object.keys(tauri).sort()).toEqual(["spawnTauriSidecar", "tauriSidecarConnector"]);
  });

  it("the core entry does not import Node built-ins or the Tauri plugin", () => {
    for (const file of ["index", "client", "transport", "ws", "lines", "errors", "types", "worker", "codec"]) {
      const source = readFileSync(new URL(`../src/${file}.ts`, import.meta.url), "utf8");
      expect(source, file).not.toMatch(/from "node:|@tauri-apps/);
    }
  });

  it("event kind lists match the protocol", () => {
    expect(api.TASK_EVENT_KINDS).toHaveLength(15);
    expect(api.SCHEDULER_EVENT_KINDS).toHaveLength(10);
    expect(api.Priority).toEqual({ realtime: 0, high: 64, normal: 128, background: 192, idle: 255 });
  });
});
