/**
 * taskmill live dashboard.
 *
 * Open `index.html?ws=ws://127.0.0.1:PORT&token=TOKEN` (serve.py prints that
 * URL; `#ws=…&token=…` works too and keeps the token out of server logs).
 * The page connects with taskmill-bridge over WebSocket (MessagePack), then:
 *
 * - refreshes `scheduler.snapshot`, `scheduler.metrics` and `task.list` every
 *   second, and at once after a reconnect (`resync`) or a `lagged` event;
 * - moves progress bars from `progress` events between snapshots;
 * - lists completions and failures from task events (seeded from history);
 * - drives the scheduler with the buttons: submit, pause/resume (global,
 *   domain, group), cancel, set_priority, pressure.set (source "ui").
 *
 * `window.taskmillDashboard` exposes the client for the browser test and for
 * poking around in the console.
 */

import {
  Priority,
  TaskmillClient,
  isTaskmillError,
  webSocketConnector,
  type ActiveTaskRecord,
  type ConnectionEvent,
  type Metrics,
  type PriorityName,
  type TaskmillEvent,
} from "taskmill-bridge";

import { isRecentEvent, recentFromEvent, recentFromHistory, type DashboardSnapshot, type Progress, type RecentItem } from "./model.js";
import * as view from "./view.js";
import { WORKLOADS } from "./workloads.js";

const REFRESH_MS = 1000;
const QUEUE_ROWS = 15;
const RECENT_ROWS = 60;
const UI_PRESSURE_SOURCE = "ui";

// ---------------------------------------------------------------------------
// State

interface ProgressEntry {
  readonly progress: Progress;
  /** performance.now() when it arrived: newer than a snapshot's request, it wins over the snapshot. */
  readonly at: number;
}

const state = {
  snapshot: null as DashboardSnapshot | null,
  metrics: null as Metrics | null,
  queue: { tasks: [] as readonly ActiveTaskRecord[], total: 0 },
  progress: new Map<number, ProgressEntry>(),
  recent: [] as RecentItem[],
  throttle: view.DEFAULT_THROTTLE as view.Throttle,
};

// ---------------------------------------------------------------------------
// Connection

function readEndpoint(): { url: string; token: string } | null {
  const query = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const url = query.get("ws") ?? hash.get("ws");
  const token = query.get("token") ?? hash.get("token") ?? "";
  return url === null ? null : { url, token };
}

const endpoint = readEndpoint();
const client = new TaskmillClient({
  connector: webSocketConnector({ endpoint: endpoint ?? { url: "ws://127.0.0.1:0", token: "" } }),
  clientName: "taskmill-dashboard/0.1.0",
  requestTimeoutMs: 10_000,
});

client.onConnection((e: ConnectionEvent) => {
  switch (e.type) {
    case "connecting":
      view.renderConnection(client.state, e.attempt > 1 ? `attempt ${e.attempt}` : "");
      break;
    case "open":
      view.renderConnection("open", e.session ? `sidecar ${e.session.version} · session ${e.session.session}` : "");
      view.renderBanner(null);
      void seedRecent();
      void refresh();
      break;
    case "closed":
      view.renderConnection(client.state, e.willReconnect ? `retrying in ${e.delayMs ?? 0} ms` : "");
      if (!e.willReconnect && e.error) view.renderBanner(`Disconnected: ${e.error.message}`);
      break;
    case "resync":
      void refresh();
      break;
    case "error":
      console.warn("taskmill:", e.error);
      break;
  }
});

/** The first connect is not retried by the client: retry it here, so the page can be opened before the sidecar. */
async function connectWithRetry(): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await client.connect();
      return;
    } catch (error) {
      if (isTaskmillError(error) && error.kind === "unauthorized") {
        view.renderConnection("failed", "");
        view.renderBanner(`The sidecar refused the token: ${error.message}`);
        return;
      }
      view.renderConnection("failed", `attempt ${attempt}`);
      view.renderBanner(`Cannot reach the sidecar at ${endpoint?.url}: ${errorText(error)}. Retrying…`);
      await sleep(Math.min(5000, 500 * attempt));
    }
  }
}

// ---------------------------------------------------------------------------
// Refresh: snapshot + metrics + queued tasks

let refreshing: Promise<void> | null = null;
let refreshAgain = false;
/** The last refresh timed out: the banner says so until one succeeds. */
let stalled = false;

/** Refreshes everything; calls made during a refresh coalesce into one more. */
function refresh(): Promise<void> {
  if (refreshing !== null) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      try {
        await refreshOnce();
        if (stalled) {
          stalled = false;
          view.renderBanner(null);
        }
      } catch (error) {
        if (client.state !== "open") continue;
        console.warn("refresh failed", error);
        if (isTaskmillError(error) && error.kind === "timeout") {
          // Connected, but the sidecar's event loop is not answering.
          stalled = true;
          view.renderBanner(`The sidecar is not answering: ${error.message}`);
        }
      }
    } while (refreshAgain && client.state === "open");
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

let soonTimer: ReturnType<typeof setTimeout> | undefined;
/** A refresh within 150 ms: after bursts of dispatches or completions. */
function refreshSoon(): void {
  if (soonTimer !== undefined) return;
  soonTimer = setTimeout(() => {
    soonTimer = undefined;
    void refresh();
  }, 150);
}

async function refreshOnce(): Promise<void> {
  if (client.state !== "open") return;
  const requestedAt = performance.now();
  const [snapshot, metrics, queue] = await Promise.all([
    client.snapshot() as Promise<DashboardSnapshot>,
    client.metrics(),
    // taskmill-bridge types `status` as one status; the sidecar also takes a list.
    client.call("task.list", { status: ["pending", "paused", "blocked", "waiting"], limit: QUEUE_ROWS }) as Promise<{
      tasks: ActiveTaskRecord[];
      total: number;
    }>,
  ]);
  state.snapshot = snapshot;
  state.metrics = metrics;
  state.queue = queue;
  if (snapshot.throttle !== undefined && snapshot.throttle.length > 0) state.throttle = snapshot.throttle;

  // Progress: the snapshot's value, unless an event arrived after we asked.
  const running = new Set(snapshot.running.map((t) => t.id));
  for (const id of state.progress.keys()) if (!running.has(id)) state.progress.delete(id);
  for (const p of snapshot.progress) {
    const held = state.progress.get(p.task_id);
    if (held === undefined || held.at < requestedAt) {
      state.progress.set(p.task_id, { progress: { percent: p.percent, message: p.message, reported: p.reported, extrapolated: p.extrapolated }, at: requestedAt });
    }
  }
  render();
}

function render(): void {
  const snap = state.snapshot;
  if (snap === null) return;
  const now = Date.now();
  view.renderGlobalState(snap.is_paused);
  view.renderCounts(snap, state.metrics);
  view.renderPressure(snap.pressure, snap.pressure_breakdown, state.throttle);
  view.renderResources(snap.resources, snap.monitoring);
  view.renderRunning(snap.running, (id) => state.progress.get(id)?.progress, now);
  view.renderQueue(state.queue.tasks, state.queue.total);
  view.renderDomains(snap.domains);
  view.renderGroups(snap.groups, snap.fair, now);
  view.renderUpdated(now);
  syncSlider(snap);
}

// ---------------------------------------------------------------------------
// Events

function onEvent(e: TaskmillEvent): void {
  switch (e.kind) {
    case "progress": {
      const progress: Progress = { percent: e.percent, message: e.message, reported: e.reported, extrapolated: !e.reported };
      state.progress.set(e.task_id, { progress, at: performance.now() });
      // A task dispatched since the last snapshot has no row yet.
      if (!view.renderProgress(e.task_id, progress)) refreshSoon();
      return;
    }
    case "dispatched":
    case "submitted":
    case "unblocked":
    case "waiting":
      refreshSoon();
      return;
    case "pressure":
      view.renderPressure(e.pressure, e.breakdown, state.throttle);
      return;
    case "paused":
    case "resumed":
      view.renderGlobalState(e.kind === "paused");
      refreshSoon();
      return;
    case "lagged":
      // Our buffer overflowed on the sidecar: what we show may be stale.
      void refresh();
      return;
    case "shutdown":
      view.renderBanner(`The sidecar is shutting down (${e.mode}).`);
      return;
    default:
      if (isRecentEvent(e)) {
        addRecent([recentFromEvent(e)]);
        if (e.kind !== "preempted") state.progress.delete(e.task_id);
      }
      refreshSoon();
  }
}

function addRecent(items: readonly RecentItem[]): void {
  const known = new Set(state.recent.map((r) => r.id));
  const fresh = items.filter((r) => !known.has(r.id));
  if (fresh.length === 0) return;
  state.recent = [...fresh, ...state.recent].sort((a, b) => b.at - a.at).slice(0, RECENT_ROWS);
  view.renderRecent(state.recent);
}

/** Fills "recent" from history after connecting, so a fresh page is not empty. */
async function seedRecent(): Promise<void> {
  try {
    const { tasks } = await client.history({ limit: 20 });
    addRecent(tasks.map(recentFromHistory));
  } catch (error) {
    console.warn("history.list failed", error);
  }
}

// ---------------------------------------------------------------------------
// Controls

function status(message: string): void {
  view.byId("wl-status").textContent = message;
}

/** Runs an action, reports a failure in the status line, and refreshes. */
async function act(what: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    status(`${what} failed: ${errorText(error)}`);
  }
  void refresh();
}

function wireControls(): void {
  view.byId("btn-pause").addEventListener("click", () => void act("pause", () => client.pause()));
  view.byId("btn-resume").addEventListener("click", () => void act("resume", () => client.resume()));

  let batches = 0;
  for (const workload of WORKLOADS) {
    const button = view.byId<HTMLButtonElement>(workload.button);
    button.title = workload.describe;
    button.addEventListener("click", () => {
      const priority = view.byId<HTMLSelectElement>("wl-priority").value as PriorityName;
      const group = view.byId<HTMLInputElement>("wl-group").value.trim();
      batches += 1;
      const batch = `dash-${Date.now().toString(36)}-${batches}`;
      const tasks = workload.build({ priority: priority in Priority ? priority : "normal", group }, batch);
      void act(`submit ${button.textContent ?? ""}`, async () => {
        const outcomes = await client.submitBatch(tasks);
        const ids = outcomes.map((o) => o.id);
        status(`${button.textContent ?? ""}: submitted #${ids[0]}${ids.length > 1 ? `…#${ids[ids.length - 1]}` : ""}`);
      });
    });
  }

  // Task rows (running and queued): cancel, bump priority.
  for (const body of ["running-body", "queue-body"]) {
    view.byId(body).addEventListener("click", (event) => {
      const button = (event.target as Element).closest<HTMLButtonElement>("button[data-action]");
      if (button === null) return;
      const id = Number(button.dataset["id"]);
      if (button.dataset["action"] === "cancel") {
        button.disabled = true;
        void act(`cancel #${id}`, () => client.cancel(id));
      } else if (button.dataset["action"] === "bump") {
        const target = button.dataset["priority"] as PriorityName | undefined;
        if (target) void act(`priority of #${id}`, () => client.setPriority(id, target));
      }
    });
  }

  view.byId("domains-body").addEventListener("click", (event) => {
    const button = (event.target as Element).closest<HTMLButtonElement>("button[data-action]");
    const domain = button?.dataset["domain"];
    if (button == null || domain === undefined) return;
    if (button.dataset["action"] === "domain-pause") void act(`pause ${domain}`, () => client.pauseDomain(domain));
    else void act(`resume ${domain}`, () => client.resumeDomain(domain));
  });

  view.byId("groups-body").addEventListener("click", (event) => {
    const button = (event.target as Element).closest<HTMLButtonElement>("button[data-action]");
    const group = button?.dataset["group"];
    if (button == null || group === undefined) return;
    const action = button.dataset["action"];
    if (action === "group-pause") void act(`pause ${group}`, () => client.pauseGroup(group));
    else if (action === "group-pause-10s") void act(`pause ${group}`, () => client.pauseGroup(group, 10_000));
    else void act(`resume ${group}`, () => client.resumeGroup(group));
  });

  wirePressureSlider();
}

// The slider sets the host pressure source "ui" (0..1). It follows the
// snapshot's "ui" source unless the user is dragging it.
let sliderBusyUntil = 0;

function wirePressureSlider(): void {
  const slider = view.byId<HTMLInputElement>("pressure-slider");
  const output = view.byId<HTMLOutputElement>("pressure-slider-value");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const send = (value: number | null): void => {
    void act("pressure.set", () => client.setPressure(UI_PRESSURE_SOURCE, value));
  };
  slider.addEventListener("input", () => {
    const value = Number(slider.value) / 100;
    output.textContent = value.toFixed(2);
    sliderBusyUntil = performance.now() + 1500;
    clearTimeout(timer);
    timer = setTimeout(() => send(value), 120);
  });
  slider.addEventListener("change", () => {
    clearTimeout(timer);
    sliderBusyUntil = performance.now() + 1500;
    send(Number(slider.value) / 100);
  });
  view.byId("pressure-clear").addEventListener("click", () => {
    clearTimeout(timer);
    slider.value = "0";
    output.textContent = "off";
    sliderBusyUntil = performance.now() + 1500;
    send(null);
  });
}

function syncSlider(snap: DashboardSnapshot): void {
  if (performance.now() < sliderBusyUntil) return;
  const ui = snap.pressure_breakdown.find((s) => s.source === UI_PRESSURE_SOURCE);
  view.byId<HTMLInputElement>("pressure-slider").value = String(Math.round((ui?.value ?? 0) * 100));
  view.byId("pressure-slider-value").textContent = ui === undefined ? "off" : ui.value.toFixed(2);
}

// ---------------------------------------------------------------------------
// Helpers and start

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

declare global {
  interface Window {
    taskmillDashboard?: { readonly client: TaskmillClient; readonly refresh: () => Promise<void>; readonly state: typeof state };
  }
}

function start(): void {
  window.taskmillDashboard = { client, refresh, state };
  wireControls();
  view.renderRecent([]);
  if (endpoint === null) {
    view.renderConnection("failed", "");
    view.renderBanner("No sidecar given: open this page as index.html?ws=ws://127.0.0.1:PORT&token=TOKEN (serve.py prints the URL).");
    return;
  }
  // Every event, progress coalesced to 10 per second per task. Sent with the handshake.
  client.subscribe({ progress_interval_ms: 100 }, onEvent);
  setInterval(() => void refresh(), REFRESH_MS);
  void connectWithRetry();
}

start();
