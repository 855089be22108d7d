// Browser test of examples/dashboard: the real page, served by serve.py, in
// Debian's Chromium driven by playwright-core, against a real sidecar.
//
//   cd tests/browser && npm ci && npm test        (or: make test-browser)
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium; missing = skipped),
// TASKMILL_PYTHON (default <repo>/.venv/bin/python). The screenshot goes to
// <repo>/test-artifacts/dashboard.png.

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
const SERVE = path.join(ROOT, "examples", "dashboard", "serve.py");
const SCREENSHOT = path.join(ROOT, "test-artifacts", "dashboard.png");

const skip = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;

/** The data-testid selector. */
const tid = (id) => `[data-testid="${id}"]`;

describe("dashboard", { skip, timeout: 180_000 }, () => {
  /** @type {import("node:child_process").ChildProcess} */
  let server;
  let serverLog = "";
  let userDataDir;
  /** @type {import("playwright-core").BrowserContext} */
  let context;
  /** @type {import("playwright-core").Page} */
  let page;
  const pageErrors = [];

  const count = (id) => page.locator(tid(id)).textContent().then((text) => Number(text));
  const snapshot = () => page.evaluate(() => window.taskmillDashboard.client.snapshot());
  /** Clicks a workload button and waits for the page to report the new submission. */
  const submitWorkload = async (button) => {
    const before = await page.locator(tid("wl-status")).textContent();
    await page.click(tid(button));
    await page.waitForFunction((previous) => {
      const text = document.querySelector('[data-testid="wl-status"]')?.textContent ?? "";
      return text !== previous && /submitted #\d+/.test(text);
    }, before);
  };

  before(async () => {
    // serve.py: static page + sidecar + initial workload. Its own process
    // group, so cleanup reaches the sidecar even if serve.py is stuck.
    server = spawn(PYTHON, [SERVE, "--exit-after", "240", "--max-concurrency", "4"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    server.stderr.on("data", (chunk) => (serverLog += chunk));
    const url = await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`serve.py printed no URL within 90 s\n${out}\n${serverLog}`)), 90_000);
      server.stdout.on("data", (chunk) => {
        out += chunk;
        const match = /^dashboard: (\S+)$/m.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      server.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`serve.py exited with code ${code}\n${out}\n${serverLog}`));
      });
    });

    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "taskmill-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 1000 },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
    page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(url);
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM"); // serve.py closes the sidecar's stdin and waits for it
      const timer = setTimeout(() => {
        try {
          process.kill(-server.pid, "SIGKILL"); // the whole group: serve.py and the sidecar
        } catch {
          // already gone
        }
      }, 20_000);
      await exited;
      clearTimeout(timer);
    }
  });

  it("connects and shows the initial workload", async () => {
    await page.waitForSelector(`${tid("conn-state")}[data-state="open"]`);
    await page.waitForSelector(`${tid("global-state")}[data-paused="false"]`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="count-running"]')?.textContent) > 0);
    assert.ok((await page.locator(`${tid("domain-row")}[data-domain="demo"]`).count()) === 1, "the demo domain is listed");
  });

  it("submits 20 × demo::sleep from the page; bars advance and tasks complete", async () => {
    const completedBefore = await count("count-completed");
    await submitWorkload("wl-sleep20");

    // Follow one of the new tasks: its bar's width must grow.
    const row = page.locator(tid("running-row"), { hasText: /sleep \d+\/20/ }).first();
    await row.waitFor();
    const taskId = await row.getAttribute("data-task-id");
    const bar = page.locator(`${tid("running-row")}[data-task-id="${taskId}"] ${tid("progress-bar")}`);
    const width0 = await bar.evaluate((el) => el.getBoundingClientRect().width);
    await page.waitForFunction(
      ({ id, w0 }) => {
        const el = document.querySelector(`[data-testid="running-row"][data-task-id="${id}"] [data-testid="progress-bar"]`);
        return el !== null && el.getBoundingClientRect().width > w0 + 2;
      },
      { id: taskId, w0: width0 },
    );

    // Screenshot while work is in flight: at least two bars partly filled.
    await page.waitForFunction(() => {
      const partial = [...document.querySelectorAll('[data-testid="progress-bar"]')].filter((el) => {
        const p = Number(el.getAttribute("data-percent"));
        return p > 0.1 && p < 0.9;
      });
      return partial.length >= 2;
    });
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.waitForFunction(
      (before) => Number(document.querySelector('[data-testid="count-completed"]')?.textContent) >= before + 4,
      completedBefore,
    );
    await page.locator(`${tid("recent-item")}[data-kind="completed"]`, { hasText: /sleep \d+\/20/ }).first().waitFor();
  });

  it("pauses and resumes the scheduler", async () => {
    await page.click(tid("btn-pause"));
    await page.waitForSelector(`${tid("global-state")}[data-paused="true"]`);
    assert.equal((await snapshot()).is_paused, true, "snapshot is_paused after Pause all");
    // A global pause preempts running tasks: nothing runs.
    await page.waitForFunction(() => document.querySelector('[data-testid="count-running"]')?.textContent === "0");
    assert.ok((await count("count-paused")) + (await count("count-pending")) > 0, "the queued work is still there");

    await page.click(tid("btn-resume"));
    await page.waitForSelector(`${tid("global-state")}[data-paused="false"]`);
    assert.equal((await snapshot()).is_paused, false, "snapshot is_paused after Resume all");
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="count-running"]')?.textContent) > 0);
  });

  it("pauses and resumes a domain and a group", async () => {
    const demo = page.locator(`${tid("domain-row")}[data-domain="demo"]`);
    await demo.locator(tid("domain-toggle")).click();
    await demo.locator(`${tid("domain-state")}[data-state="paused"]`).waitFor();
    assert.equal((await snapshot()).domains.find((d) => d.domain === "demo")?.paused, true);
    await demo.locator(tid("domain-toggle")).click();
    await demo.locator(`${tid("domain-state")}[data-state="active"]`).waitFor();

    const batch = page.locator(`${tid("group-row")}[data-group="batch"]`);
    await batch.locator(tid("group-toggle")).click();
    await batch.locator(`${tid("group-state")}[data-state="paused"]`).waitFor();
    assert.equal((await snapshot()).groups.find((g) => g.group === "batch")?.paused, true);
    await batch.locator(tid("group-toggle")).click();
    await batch.locator(`${tid("group-state")}[data-state="active"]`).waitFor();
  });

  it("sets UI pressure with the slider", async () => {
    await page.locator(tid("pressure-slider")).evaluate((input) => {
      input.value = "90";
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
    await page.waitForSelector(`${tid("pressure-source")}[data-source="ui"]`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="pressure-value"]')?.textContent) >= 0.9);
    const ui = (await snapshot()).pressure_breakdown.find((s) => s.source === "ui");
    assert.equal(ui?.value, 0.9);
    await page.click(tid("pressure-clear"));
    await page.waitForSelector(`${tid("pressure-source")}[data-source="ui"]`, { state: "detached" });
  });

  it("shows the background IO pacer: its rate, the latency against the target, and why", async () => {
    await page.waitForSelector(tid("io-reason"));
    const pacing = (await snapshot()).io_pacing;
    assert.ok(pacing, "the snapshot has io_pacing");
    const reason = await page.locator(tid("io-reason")).getAttribute("data-reason");
    assert.ok(["alone", "over_target", "under_target", "off", "starting"].includes(reason ?? ""), reason);
    assert.ok((await page.locator(tid("io-rate")).textContent())?.length);
    if (pacing.target_ms !== null) {
      assert.match(await page.locator(tid("io-latency")).textContent(), new RegExp(`target ${pacing.target_ms} ms`));
    }
  });

  it("bumps a queued task's priority and cancels a running task", async () => {
    // Plenty of queued work: 20 more sleeps. Bump the newest queued task,
    // which is far from being dispatched (set_priority skips running tasks).
    await submitWorkload("wl-sleep20");
    const queued = page.locator(`${tid("queue-row")}:has(${tid("bump")}[data-priority="high"]:not([disabled]))`).last();
    await queued.waitFor();
    const queuedId = Number(await queued.getAttribute("data-task-id"));
    await queued.locator(tid("bump")).click();
    await page.waitForFunction(async (id) => {
      const record = await window.taskmillDashboard.client.get(id);
      return record.priority === 64;
    }, queuedId);

    // Cancel the running task with the most work left, so it cannot finish first.
    await page.locator(tid("running-row")).first().waitFor();
    const runningId = await page.evaluate(() => {
      const rows = [...document.querySelectorAll('[data-testid="running-row"]')];
      const percent = (row) => Number(row.querySelector('[data-testid="progress-bar"]')?.getAttribute("data-percent") ?? 0);
      rows.sort((a, b) => percent(a) - percent(b));
      return rows[0].getAttribute("data-task-id");
    });
    await page.click(`${tid("running-row")}[data-task-id="${runningId}"] ${tid("cancel")}`);
    await page.locator(`${tid("recent-item")}[data-kind="cancelled"][data-task-id="${runningId}"]`).waitFor();
    await page.locator(`${tid("running-row")}[data-task-id="${runningId}"]`).waitFor({ state: "detached" });
  });

  it("logged no page errors", () => {
    assert.deepEqual(pageErrors, []);
  });
});
