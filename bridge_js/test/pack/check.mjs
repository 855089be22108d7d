#!/usr/bin/env node
// The published package, as a consumer gets it: `npm pack`, then a scratch
// project outside the repository installs the tarball and
//   - checks what the tarball holds (dist with source and declaration maps, src, README; no tests);
//   - runs it as ESM (every entry; a spawned stand-in sidecar; run(); a task store);
//   - runs it from CommonJS (`require()` on Node >= 20.19, and `import()`);
//   - type-checks a consumer with TypeScript `moduleResolution` node16 and bundler,
//     strict and without skipLibCheck, and a CommonJS (.cts) consumer.
//
//   npm run test:pack        (make test-bridge runs it)
//
// Needs no network: the package has no runtime dependencies, and the type
// packages the consumer needs (React, Node, the Tauri plugin) are linked from
// bridge_js/node_modules.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const bridge = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const mini = join(bridge, "test", "fixtures", "mini-sidecar.mjs");
const tsc = join(bridge, "node_modules", ".bin", "tsc");
const scratch = mkdtempSync(join(tmpdir(), "taskmill-bridge-pack-"));
const log = (line) => console.log(`pack: ${line}`);
const run = (command, args, cwd, extra = {}) => execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000, ...extra });

let failed = false;
function check(what, fn) {
  try {
    fn();
    log(`ok   ${what}`);
  } catch (error) {
    failed = true;
    log(`FAIL ${what}\n${error.stdout ?? ""}${error.stderr ?? ""}${error.stdout || error.stderr ? "" : error.stack}`);
  }
}

try {
  // 1. The tarball (prepack builds dist).
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", scratch], bridge, { stdio: ["ignore", "pipe", "ignore"] }));
  const { filename, files, size } = packed[0];
  const paths = files.map((f) => f.path);
  log(`${filename}: ${paths.length} files, ${(size / 1024).toFixed(1)} KB`);
  check("the tarball holds dist (js, d.ts, maps), src and README, and no tests", () => {
    for (const entry of ["index", "node", "tauri", "react"]) {
      for (const ext of [".js", ".d.ts", ".js.map", ".d.ts.map"]) if (!paths.includes(`dist/${entry}${ext}`)) throw new Error(`missing dist/${entry}${ext}`);
      if (!paths.includes(`src/${entry}.ts`)) throw new Error(`missing src/${entry}.ts`);
    }
    for (const required of ["README.md", "package.json"]) if (!paths.includes(required)) throw new Error(`missing ${required}`);
    const stray = paths.filter((p) => p.startsWith("test/") || p.includes("node_modules") || p.startsWith("bench/"));
    if (stray.length > 0) throw new Error(`unexpected files: ${stray.join(", ")}`);
  });

  // 2. A scratch project installs it (no runtime dependencies: no network).
  const app = join(scratch, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-consumer", private: true, type: "module" }, null, 2));
  run("npm", ["install", join(scratch, filename), "--no-audit", "--no-fund", "--no-package-lock", "--offline"], app);
  for (const dep of ["@types/node", "@types/react", "react", "@tauri-apps/plugin-shell"]) {
    mkdirSync(dirname(join(app, "node_modules", dep)), { recursive: true });
    symlinkSync(join(bridge, "node_modules", dep), join(app, "node_modules", dep), "dir");
  }
  const installed = JSON.parse(readFileSync(join(app, "node_modules", "taskmill-bridge", "package.json"), "utf8"));
  log(`installed taskmill-bridge ${installed.version} in ${app}`);

  // 3. ESM at run time: every entry, a spawned stand-in sidecar, run(), a store.
  writeFileSync(
    join(app, "esm.mjs"),
    `import { createTaskStore, isTaskmillError, VERSION } from "taskmill-bridge";
import { spawnSidecar } from "taskmill-bridge/node";
import * as tauri from "taskmill-bridge/tauri";
import * as react from "taskmill-bridge/react";
if (typeof tauri.spawnTauriSidecar !== "function" || typeof react.useTasks !== "function") throw new Error("entries");
const sidecar = await spawnSidecar({ command: process.execPath, args: [${JSON.stringify(mini)}, "--stdio"] });
const result = await sidecar.client.run({ task_type: "demo::echo", payload: { hello: "scratch" } });
if (result.hello !== "scratch") throw new Error("run() result " + JSON.stringify(result));
const store = createTaskStore(sidecar.client);
await new Promise((resolve) => store.subscribe((s) => s.status === "live" && resolve()));
const exit = await sidecar.stop();
if (exit.code !== 0) throw new Error("exit " + JSON.stringify(exit));
const reason = await sidecar.client.closed();
if (!isTaskmillError(reason) || reason.kind !== "closed") throw new Error("closed() " + reason);
console.log("esm ok", VERSION, store.getSnapshot().status);
`,
  );
  check("ESM: every entry loads; spawnSidecar, run(), createTaskStore, stop()", () => log(run(process.execPath, ["esm.mjs"], app).trim()));

  // 4. CommonJS at run time.
  writeFileSync(
    join(app, "cjs.cjs"),
    `const [major, minor] = process.versions.node.split(".").map(Number);
(async () => {
  const viaImport = await import("taskmill-bridge");
  if (typeof viaImport.connectWebSocket !== "function") throw new Error("import()");
  if (major > 20 || (major === 20 && minor >= 19)) {
    const viaRequire = require("taskmill-bridge");
    if (viaRequire.connectWebSocket !== viaImport.connectWebSocket) throw new Error("require()");
  }
  console.log("cjs ok (import()" + (major > 20 || (major === 20 && minor >= 19) ? " and require()" : "") + ")");
})().catch((error) => { console.error(error); process.exit(1); });
`,
  );
  check("CommonJS: import() everywhere, require() on Node >= 20.19", () => log(run(process.execPath, ["--no-warnings", "cjs.cjs"], app).trim()));

  // 5. Types, as consumers resolve them.
  writeFileSync(
    join(app, "consumer.ts"),
    `import { connectWebSocket, createTaskStore, TaskFailedError, type LiveTask, type TaskmillClient } from "taskmill-bridge";
import { spawnSidecar, type SpawnedSidecar } from "taskmill-bridge/node";
import { spawnTauriSidecar } from "taskmill-bridge/tauri";
import { useTasks, TaskmillProvider } from "taskmill-bridge/react";

type Tasks = { "media::thumb": { payload: { path: string }; result: { thumb: string } } };

export async function main(): Promise<string> {
  const client: TaskmillClient<Tasks> = await connectWebSocket<Tasks>({ endpoint: { url: "ws://127.0.0.1:1", token: "t" } });
  const store = createTaskStore(client);
  const first: LiveTask<Tasks> | undefined = store.getSnapshot().running[0];
  // @ts-expect-error: the payload is typed
  await client.submit({ task_type: "media::thumb", payload: { path: 1 } });
  try {
    const { thumb } = await client.run({ task_type: "media::thumb", payload: { path: "a.jpg" } });
    return thumb + String(first?.id);
  } catch (error) {
    if (error instanceof TaskFailedError) return error.status;
    throw error;
  }
}
export const spawned: Promise<SpawnedSidecar> = spawnSidecar({ command: "taskmill-sidecar" });
export const tauri = spawnTauriSidecar;
export const hooks = [useTasks, TaskmillProvider];
`,
  );
  writeFileSync(
    join(app, "consumer.cts"),
    `// CommonJS: types through import() and resolution-mode "import".
import type { TaskmillClient } from "taskmill-bridge" with { "resolution-mode": "import" };
export async function connect(): Promise<TaskmillClient> {
  const { connectWebSocket } = await import("taskmill-bridge");
  return connectWebSocket({ endpoint: { url: "ws://127.0.0.1:1", token: "t" } });
}
`,
  );
  const base = { strict: true, noEmit: true, skipLibCheck: false, target: "ES2022", lib: ["ES2022", "DOM"], types: ["node"], exactOptionalPropertyTypes: true };
  const configs = {
    "tsconfig.node16.json": { compilerOptions: { ...base, module: "node16", moduleResolution: "node16" }, files: ["consumer.ts", "consumer.cts"] },
    "tsconfig.bundler.json": { compilerOptions: { ...base, module: "esnext", moduleResolution: "bundler" }, files: ["consumer.ts"] },
  };
  for (const [name, config] of Object.entries(configs)) {
    writeFileSync(join(app, name), JSON.stringify(config, null, 2));
    check(`TypeScript, ${name.replace(/tsconfig\.|\.json/g, "")} resolution, strict, skipLibCheck off`, () => run(tsc, ["-p", name], app));
  }
} catch (error) {
  failed = true;
  log(`FAIL ${error.stdout ?? ""}${error.stderr ?? ""}${error.stack ?? error}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (failed) process.exit(1);
log("all checks passed");
