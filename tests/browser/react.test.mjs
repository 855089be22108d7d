// Browser test of examples/react: the React page (taskmill-bridge's task store
// and hooks) in Debian's Chromium, driven by playwright-core, against a real
// sidecar that examples/react/serve.mjs runs with restart on.
//
//   cd tests/browser && npm ci && npm test        (or: make test-browser)
//
// Progress bars advance, tasks finish, run() resolves; then the sidecar is
// SIGKILLed: the page goes stale, the sidecar is respawned (new pid and
// token), the page reconnects through /endpoint, its store rebuilds, the
// interrupted tasks run again and finish, and new work flows. Screenshot:
// <repo>/test-artifacts/react.png.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const PYTHON = process.env.TASKMILL_PYTHON || path.join(ROOT, ".venv", "bin", "python");
const SERVE = path.join(ROOT, "examples", "react", "serve.mjs");
const SCREENSHOT = path.join(ROOT, "test-artifacts", "react.png");

const skip = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
const tid = (id) => `[data-testid="${id}"]`;

describe("react example", { skip, timeout: 180_000 }, () => {
  /** @type {import("node:child_process").ChildProcess} */
  let server;
  let serverOut = "";
  let serverLog = "";
  let origin;
  let userDataDir;
  /** @type {import("playwright-core").BrowserContext} */
  let context;
  /** @type {import("playwright-core").Page} */
  let page;
  const pageErrors = [];

  const endpoint = async () => (await fetch(`${origin}/endpoint`)).json();
  const doneCount = (status) => page.locator(`${tid("done-row")}[data-status="${status}"]`).count();
  /** Waits until two bars are part-way and one of them moves forward. */
  const barsAdvance = async () => {
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="bar"]')].filter((el) => Number(el.dataset.percent) > 0 && Number(el.dataset.percent) < 0.9).length >= 2);
    const row = page.locator(tid("task-row")).first();
    const id = await row.getAttribute("data-task-id");
    const p0 = Number(await row.locator(tid("bar")).getAttribute("data-percent"));
    await page.waitForFunction(
      ({ id, p0 }) => {
        const el = document.querySelector(`[data-testid="task-row"][data-task-id="${id}"] [data-testid="bar"]`);
        return el === null || Number(el.dataset.percent) > p0;
      },
      { id, p0 },
    );
  };

  before(async () => {
    server = spawn(process.execPath, [SERVE, "--exit-after", "240"], {
      cwd: ROOT,
      env: { ...process.env, TASKMILL_PYTHON: PYTHON },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    server.stderr.on("data", (chunk) => (serverLog += chunk));
    origin = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve.mjs printed no URL within 60 s\n${serverOut}\n${serverLog}`)), 60_000);
      server.stdout.on("data", (chunk) => {
        serverOut += chunk;
        const match = /^react-example: (http:\/\/[^/\s]+)\/$/m.exec(serverOut);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      server.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`serve.mjs exited with code ${code}\n${serverOut}\n${serverLog}`));
      });
    });

    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "taskmill-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 900, height: 900 },
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);
    page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      // A refused WebSocket while the sidecar restarts is expected; anything else is not.
      if (message.type() === "error" && !/WebSocket connection to .* failed/.test(message.text())) pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(`${origin}/`);
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM");
      const timer = setTimeout(() => {
        try {
          process.kill(-server.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 15_000);
      await exited;
      clearTimeout(timer);
    }
  });

  it("connects: the store goes live", async () => {
    await page.waitForSelector(`${tid("store-status")}[data-status="live"]`);
  });

  it("progress bars advance and tasks finish", async () => {
    await page.click(tid("submit"));
    await barsAdvance();
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="bar"]')].filter((el) => Number(el.dataset.percent) > 0.3 && Number(el.dataset.percent) < 0.9).length >= 2);
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="done-row"][data-status="completed"]').length >= 2);
  });

  it("run() resolves with the typed result", async () => {
    await page.click(tid("run"));
    await page.waitForSelector(`${tid("run-result")}:has-text("result: hello from run()")`);
  });

  it("survives a sidecar restart: stale, reconnected, interrupted work re-run, new work done", async () => {
    await page.click(tid("submit"));
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="task-row"]').length >= 2);
    const interrupted = await page.locator(tid("task-row")).evaluateAll((rows) => rows.map((r) => r.getAttribute("data-task-id")));
    const before = await endpoint();
    process.kill(before.pid, "SIGKILL");

    await page.waitForSelector(`${tid("store-status")}[data-status="stale"]`);
    await page.waitForSelector(tid("banner"));
    let afterRestart = before;
    for (const deadline = Date.now() + 30_000; afterRestart.pid === before.pid; ) {
      assert.ok(Date.now() < deadline, "serve.mjs respawned the sidecar within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
      afterRestart = await endpoint();
    }
    // A new process with a new token (its port is a new ephemeral one, which the OS may hand out again).
    assert.notEqual(afterRestart.token, before.token, "the respawned sidecar has a new token");
    await page.waitForSelector(`${tid("store-status")}[data-status="live"]`);
    await page.waitForSelector(tid("banner"), { state: "detached" });

    // The tasks that were running when it died run again (at-least-once) and finish.
    await page.waitForFunction(
      (ids) => ids.every((id) => document.querySelector(`[data-testid="done-row"][data-task-id="${id}"][data-status="completed"]`) !== null),
      interrupted,
      { timeout: 60_000 },
    );
    // New work flows through the new connection.
    const completedBefore = await doneCount("completed");
    await page.click(tid("submit"));
    await barsAdvance();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="done-row"][data-status="completed"]').length > n || n >= 12, completedBefore);
    await page.click(tid("run"));
    await page.waitForSelector(`${tid("run-result")}:has-text("result: hello from run()")`);
    assert.match(serverOut, /sidecar: pid \d+[\s\S]*sidecar: pid \d+/, "serve.mjs spawned a second sidecar");
  });

  it("logged no page errors", () => {
    assert.deepEqual(pageErrors, []);
  });
});
