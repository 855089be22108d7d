#!/usr/bin/env node
// Serves the React example and runs a sidecar for it.
//
//   node serve.mjs [--port 0] [--exit-after SECONDS]
//
// - spawns `$TASKMILL_PYTHON -m taskmill --stdio --ws --demo` (default: the
//   repository's .venv) with `spawnSidecar(..., { restart: true })`: if the
//   sidecar dies it is respawned on the same database, with a new port and token;
// - serves index.html, style.css and dist/app.js on http://127.0.0.1:PORT, and
//   GET /endpoint: the sidecar's current WebSocket URL, token and pid (the page
//   asks before every (re)connect);
// - prints `react-example: <url>` and `sidecar: pid <n>` for every spawn.
//
// Ctrl-C or SIGTERM stops the sidecar (stdin EOF: it drains and exits).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSidecar } from "taskmill-bridge/node";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const python = process.env.TASKMILL_PYTHON || join(root, ".venv", "bin", "python");
const TYPES = { ".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".map": "application/json" };
const FILES = new Set(["/index.html", "/style.css", "/dist/app.js", "/dist/app.js.map"]);

let sidecar = null;
const server = createServer((req, res) => {
  const path = new URL(req.url ?? "/", "http://x").pathname;
  if (path === "/endpoint") {
    const ws = sidecar?.ready.transports.ws;
    res.writeHead(ws ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(ws ? { url: ws.url, token: ws.token, pid: sidecar.ready.pid } : { error: "no sidecar" }));
    return;
  }
  const file = path === "/" ? "/index.html" : path;
  if (!FILES.has(file)) {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = readFileSync(join(here, file));
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(Number(arg("--port", "0")), "127.0.0.1", resolve));
const port = server.address().port;
const origin = `http://127.0.0.1:${port}`;

const dir = mkdtempSync(join(tmpdir(), "taskmill-react-"));
sidecar = await spawnSidecar({
  command: python,
  args: ["-m", "taskmill", "--stdio", "--ws", "--demo", "--db", join(dir, "tasks.db"), "--allow-origin", origin, "--max-concurrency", "8", "--drain-timeout-ms", "1000", "--parent-pid", String(process.pid)],
  clientName: "taskmill-react-serve/0.1.0",
  restart: { initialDelayMs: 200, maxDelayMs: 2000 },
  stderr: (chunk) => process.stderr.write(chunk),
  onSpawn: (child) => console.log(`sidecar: pid ${child.pid}`),
});
console.log(`react-example: ${origin}/`);

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  await sidecar.stop({ timeoutMs: 5000 }).catch(() => undefined);
  server.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));
const exitAfter = Number(arg("--exit-after", "0"));
if (exitAfter > 0) setTimeout(() => void stop(0), exitAfter * 1000);
