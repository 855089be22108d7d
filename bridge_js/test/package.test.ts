import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as api from "../src/index.js";
import * as node from "../src/node.js";
import * as react from "../src/react.js";
import * as tauri from "../src/tauri.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
  type: string;
  sideEffects: boolean;
  dependencies?: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional: boolean }>;
  exports: Record<string, Record<string, string> | string>;
  files: string[];
};

describe("package", () => {
  it("is ESM only, side-effect free, with no runtime dependencies and optional peers", () => {
    expect(pkg.type).toBe("module");
    expect(pkg.sideEffects).toBe(false);
    expect(pkg.dependencies ?? {}).toEqual({});
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
    for (const mod of [api, node, tauri, react]) expect("default" in mod).toBe(false);
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
        "TaskFailedError",
        "TaskFailure",
        "TaskmillClient",
        "TaskmillError",
        "VERSION",
        "connectWebSocket",
        "createClient",
        "createLineTransport",
        "createMsgpackDecoder",
        "createMsgpackEncoder",
        "createTaskStore",
        "decodeMsgpack",
        "defaultShouldRetry",
        "encodeJsonLine",
        "encodeMsgpack",
        "estimateProgress",
        "isHistoryRecord",
        "isTaskFailedError",
        "isTaskmillError",
        "parseReady",
        "webSocketConnector",
      ].sort(),
    );
    expect(Object.keys(node).sort()).toEqual(["childProcessConnector", "shouldRestart", "spawnSidecar"]);
    expect(Object.keys(tauri).sort()).toEqual(["spawnTauriSidecar", "tauriSidecarConnector"]);
    expect(Object.keys(react).sort()).toEqual(["TaskmillProvider", "filterTasks", "useEstimatedProgress", "useTask", "useTaskmill", "useTasks"]);
  });

  it("React and the Tauri plugin are optional peers; only their entries import them", () => {
    expect(pkg.peerDependenciesMeta["react"]?.optional).toBe(true);
    for (const file of readdirSync(new URL("../src/", import.meta.url))) {
      const source = readFileSync(new URL(`../src/${file}`, import.meta.url), "utf8");
      if (file !== "react.ts") expect(source, file).not.toMatch(/from "react"/);
    }
  });

  it("the core entry does not import Node built-ins or the Tauri plugin", () => {
    const browserSafe = readdirSync(new URL("../src/", import.meta.url)).filter((f) => f.endsWith(".ts") && !["node.ts", "tauri.ts"].includes(f));
    expect(browserSafe.length).toBeGreaterThan(15);
    for (const file of browserSafe.map((f) => f.replace(/\.ts$/, ""))) {
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
