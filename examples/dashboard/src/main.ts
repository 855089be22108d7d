/**
 * taskmill live dashboard.
 *
 * Open `index.html?ws=ws://127.0.0.1:PORT&token=TOKEN` (serve.py prints that
 * URL; `#ws=…&token=…` works too and keeps the token out of server logs).
 * The page connects with taskmill-bridge over WebSocket (MessagePack), and
 * renders a task store (`createTaskStore`): running tasks with their
 * progress, the queue, recent outcomes, counts, pressure, domains and
 * groups, all kept live by the store from events, with its rebuilds after a
 * reconnect or `lagged`. The page itself only adds the counters since start
 * (`scheduler.metrics`, once a second) and the buttons: submit,
 * pause/resume (global, domain, group), cancel, set_priority, pressure.set
 * (source "ui").
 *
 * `window.taskmillDashboard` exposes the client and the store for the
 * browser test and for poking around in the console.
 */

import {
  Priority,
  TaskmillClient,
  createTaskStore,
  isTaskmillError,
  webSocketConnector,
  type ConnectionEvent,
  type Metrics,
  type PriorityName,
  type TaskStoreState,
} from "taskmill-bridge";

import { recentFromTask } from "./model.js";
import { Timeline, sampleOf } from "./timeline.js";
import * as view from "./view.js";
import { WORKLOADS } from "./workloads.js";

const METRICS_MS = 1000;
const QUEUE_ROWS = 15;
const RECENT_ROWS = 60;
const UI_PRESSURE_SOURCE = "ui";

// ---------------------------------------------------------------------------
// Connection and the store

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
// Every event, progress coalesced to 10 per second per task; the queue and
// the recent outcomes capped to what the page shows.
const store = createTaskStore(client, { queued: QUEUE_ROWS, finished: RECENT_ROWS, progressIntervalMs: 100, refreshMs: 1000 });
let metrics: Metrics | null = null;
let sessionText = "";
const timeline = new Timeline(view.byId("timeline"));

client.onConnection((e: ConnectionEvent) => {
  switch (e.type) {
    case "connecting":
      view.renderConnection(client.state, e.attempt > 1 ? `attempt ${e.attempt}` : "");
      break;
    case "open":
      sessionText = e.session ? `sidecar ${e.session.version} · session ${e.session.session}` : "";
      view.renderConnection("open", sessionText);
      view.renderBanner(null);
      void refreshMetrics();
      break;
    case "closed":
      view.renderConnection(client.state, e.willReconnect ? `retrying in ${e.delayMs ?? 0} ms` : "");
      if (!e.willReconnect && e.error) view.renderBanner(`Disconnected: ${e.error.message}`);
      break;
    case "resync":
    case "error":
      if (e.type === "error") console.warn("taskmill:", e.error);
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
// Rendering: one function of the store's state (plus the metrics)

function render(state: TaskStoreState): void {
  const snap = state.snapshot;
  const now = Date.now();
  if (client.state === "open") view.renderConnection("open", state.status === "live" ? sessionText : `${sessionText} · ${state.status}`);
  if (state.status === "live" && state.error === null) clearStall();
  else if (state.error !== null && state.error.kind === "timeout") view.renderBanner(`The sidecar is not answering: ${state.error.message}`);
  if (snap === null) return;
  view.renderGlobalState(state.isPaused);
  view.renderCounts(state.counts, snap.max_concurrency, metrics);
  const throttle = snap.throttle !== undefined && snap.throttle.length > 0 ? snap.throttle : view.DEFAULT_THROTTLE;
  view.renderPressure(state.pressure, state.pressureBreakdown, throttle);
  view.renderResources(snap.resources, snap.monitoring);
  view.renderIoPacing(snap.io_pacing);
  view.renderRunning(state.running, now);
  view.renderQueue(state.queued, state.counts.queued);
  view.renderDomains(snap.domains);
  view.renderGroups(snap.groups, snap.fair, now);
  view.renderRecent(state.finished.map(recentFromTask));
  view.renderUpdated(now);
  syncSlider(state);
}

function clearStall(): void {
  const banner = document.getElementById("banner");
  if (banner !== null && banner.textContent?.startsWith("The sidecar is not answering")) view.renderBanner(null);
}

/** The counters since the sidecar started: the one thing the store does not hold. */
async function refreshMetrics(): Promise<void> {
  if (client.state !== "open") return;
  try {
    metrics = await client.metrics();
    view.renderCounts(store.getSnapshot().counts, store.getSnapshot().snapshot?.max_concurrency ?? null, metrics);
    timeline.record(Date.now(), ...sampleOf(metrics, store.getSnapshot()));
  } catch (error) {
    console.warn("scheduler.metrics failed", error);
  }
}

// ---------------------------------------------------------------------------
// Controls

function status(message: string): void {
  view.byId("wl-status").textContent = message;
}

/**
 * Runs an action, reports a failure in the status line, and asks the store
 * to rebuild: some effects (a new priority, a pause) are not events.
 */
async function act(what: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    status(`${what} failed: ${errorText(error)}`);
  }
  void store.refresh();
  void refreshMetrics();
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
    else if (action === "group-pause-10s") void act(`pause ${group}`, () => client.pauseGroup(group, { durationMs: 10_000 }));
    else void act(`resume ${group}`, () => client.resumeGroup(group));
  });

  wirePressureSlider();
}

// The slider sets the host pressure source "ui" (0..1). It follows the
// store's "ui" source unless the user is dragging it.
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

function syncSlider(state: TaskStoreState): void {
  if (performance.now() < sliderBusyUntil) return;
  const ui = state.pressureBreakdown.find((s) => s.source === UI_PRESSURE_SOURCE);
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
    taskmillDashboard?: { readonly client: TaskmillClient; readonly store: typeof store; readonly timeline: Timeline; readonly refresh: () => Promise<void> };
  }
}

function start(): void {
  window.taskmillDashboard = { client, store, timeline, refresh: () => store.refresh() };
  wireControls();
  view.renderRecent([]);
  if (endpoint === null) {
    view.renderConnection("failed", "");
    view.renderBanner("No sidecar given: open this page as index.html?ws=ws://127.0.0.1:PORT&token=TOKEN (serve.py prints the URL).");
    return;
  }
  store.subscribe(render);
  setInterval(() => void refreshMetrics(), METRICS_MS);
  void connectWithRetry();
}

start();
