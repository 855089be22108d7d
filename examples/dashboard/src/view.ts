/**
 * Rendering: plain DOM, no framework. Every function here takes data and
 * updates the page; none of them talks to the sidecar. Rows are keyed (by
 * task id, domain, group) and updated in place, so a progress bar is the same
 * element from one refresh to the next and its width animates.
 *
 * Buttons carry `data-action` (and `data-id`, `data-domain`, `data-group`);
 * main.ts handles their clicks with one delegated listener per table.
 */

import type { ConnectionState, LiveTask, Metrics, PressureSource, SnapshotDomain, SnapshotGroup, SnapshotIoPacing, SnapshotResources, TaskCounts } from "taskmill-bridge";

import type { RecentItem } from "./model.js";

// ---------------------------------------------------------------------------
// Small DOM helpers

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`missing #${id} in index.html`);
  return node as T;
}

type Attrs = Record<string, string | number | boolean | undefined>;

/** Creates an element: `h("td", { class: "num" }, "42")`. Attributes set to `undefined` or `false` are left out. */
export function h(tag: string, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Keyed reconciliation of a `<tbody>`: creates rows for new keys, updates
 * existing ones, removes the rest, and keeps the order of `items`.
 */
function reconcile<T>(body: HTMLElement, items: readonly T[], key: (item: T) => string, create: (item: T) => HTMLElement, update: (row: HTMLElement, item: T) => void): void {
  const existing = new Map<string, HTMLElement>();
  for (const row of Array.from(body.children) as HTMLElement[]) existing.set(row.dataset["key"] ?? "", row);
  let cursor: Element | null = body.firstElementChild;
  for (const item of items) {
    const k = key(item);
    let row = existing.get(k);
    if (row === undefined) {
      row = create(item);
      row.dataset["key"] = k;
    } else {
      existing.delete(k);
    }
    update(row, item);
    if (row !== cursor) body.insertBefore(row, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const row of existing.values()) row.remove();
}

// ---------------------------------------------------------------------------
// Formatting

export function fmtPct(value: number): string {
  return `${Math.round(value * 100)}%`;
}

function fmtBytesPerSecond(bps: number): string {
  const units = ["B/s", "KB/s", "MB/s", "GB/s"];
  let value = bps;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function fmtClock(at: number): string {
  return new Date(at).toLocaleTimeString([], { hour12: false });
}

const PRIORITY_NAMES: Record<number, string> = { 0: "realtime", 64: "high", 128: "normal", 192: "background", 255: "idle" };

export function fmtPriority(priority: number): string {
  return PRIORITY_NAMES[priority] ?? String(priority);
}

/** The next more urgent named priority (normal -> high -> realtime), or null at realtime. */
export function bumpTarget(priority: number): { readonly name: string; readonly value: number } | null {
  if (priority > 64) return { name: "high", value: 64 };
  if (priority > 0) return { name: "realtime", value: 0 };
  return null;
}

// ---------------------------------------------------------------------------
// Header

export function renderConnection(state: ConnectionState | "failed", detail: string): void {
  const pill = byId("conn-state");
  pill.dataset["state"] = state;
  setText(pill, state === "open" ? "connected" : state);
  setText(byId("sidecar-info"), detail);
}

export function renderBanner(message: string | null): void {
  const banner = byId("banner");
  banner.hidden = message === null;
  setText(banner, message ?? "");
}

export function renderGlobalState(isPaused: boolean): void {
  const pill = byId("global-state");
  pill.dataset["paused"] = String(isPaused);
  setText(pill, isPaused ? "scheduler paused" : "scheduler running");
  byId<HTMLButtonElement>("btn-pause").disabled = isPaused;
  byId<HTMLButtonElement>("btn-resume").disabled = !isPaused;
}

export function renderUpdated(at: number): void {
  setText(byId("last-updated"), `snapshot ${fmtClock(at)}`);
}

// ---------------------------------------------------------------------------
// Counts

export function renderCounts(counts: TaskCounts, maxConcurrency: number | null, metrics: Metrics | null): void {
  setText(byId("count-running"), String(counts.running));
  setText(byId("count-pending"), String(counts.pending));
  setText(byId("count-paused"), String(counts.paused));
  setText(byId("count-blocked"), String(counts.blocked));
  setText(byId("count-waiting"), String(counts.waiting));
  if (maxConcurrency !== null) setText(byId("max-concurrency"), String(maxConcurrency));
  if (metrics !== null) {
    const c = metrics.counters;
    setText(byId("count-completed"), String(c.completed));
    setText(byId("count-failed"), String(c.failed));
    setText(byId("count-dead"), String(c.dead_lettered));
    setText(byId("count-cancelled"), String(c.cancelled));
    setText(byId("count-preempted"), String(c.preempted));
  }
}

// ---------------------------------------------------------------------------
// Pressure

/** Pressure above which tasks of this priority or less urgent are held: [priority, threshold]. */
export type Throttle = readonly (readonly [number, number])[];

/** The documented policy: `background` and below above 0.5, `normal` above 0.75. */
export const DEFAULT_THROTTLE: Throttle = [
  [192, 0.5],
  [128, 0.75],
];

export function renderPressure(pressure: number, breakdown: readonly PressureSource[], throttle: Throttle): void {
  const bar = byId("pressure-bar");
  bar.style.width = fmtPct(Math.min(1, Math.max(0, pressure)));
  const sorted = [...throttle].sort((a, b) => a[1] - b[1]);
  const held = sorted.filter(([, limit]) => pressure > limit).map(([priority]) => priority);
  bar.dataset["level"] = held.length === 0 ? "low" : held.length < sorted.length ? "mid" : "high";
  setText(byId("pressure-value"), pressure.toFixed(2));
  const mostUrgentHeld = held.length === 0 ? null : Math.min(...held);
  setText(
    byId("pressure-throttle"),
    mostUrgentHeld === null ? "no throttling" : `holding ${fmtPriority(mostUrgentHeld)} and less urgent work`,
  );
  const marks: Record<number, string> = { 192: "mark-background", 128: "mark-normal" };
  for (const [priority, limit] of throttle) {
    const id = marks[priority];
    if (id !== undefined) byId(id).style.left = fmtPct(limit);
  }

  const list = byId("pressure-breakdown");
  const items = [...breakdown].sort((a, b) => a.source.localeCompare(b.source));
  reconcile(
    list,
    items,
    (s) => s.source,
    (s) => h("li", { "data-source": s.source, "data-testid": "pressure-source" }, h("span", {}, s.source), h("div", { class: "mini-bar" }, h("div")), h("span", { class: "num" })),
    (li, s) => {
      (li.querySelector(".mini-bar > div") as HTMLElement).style.width = fmtPct(Math.min(1, s.value));
      setText(li.lastElementChild as Element, s.value.toFixed(2));
    },
  );
}

export function renderResources(resources: SnapshotResources | undefined, monitoring: boolean | undefined): void {
  const dl = byId("resources");
  if (resources === undefined || monitoring === false) {
    dl.replaceChildren(h("div", {}, h("dt", {}, "resource monitoring off")));
    return;
  }
  const rows: [string, string][] = [
    ["cpu", fmtPct(resources.cpu)],
    ["memory", fmtPct(resources.memory)],
    [
      "battery",
      resources.battery == null
        ? "–"
        : `${Math.round(resources.battery.percent)}%${resources.battery.plugged ? " (plugged in)" : ""}`,
    ],
    ["disk read", fmtBytesPerSecond(resources.disk_read_bps)],
    ["disk write", fmtBytesPerSecond(resources.disk_write_bps)],
    ["net rx/tx", `${fmtBytesPerSecond(resources.net_rx_bps)} / ${fmtBytesPerSecond(resources.net_tx_bps)}`],
  ];
  dl.replaceChildren(...rows.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value))));
}

const IO_REASONS: Readonly<Record<SnapshotIoPacing["reason"], string>> = {
  alone: "no other program uses the disk: full speed",
  over_target: "others use the disk and its latency is over the target: slowing down",
  under_target: "others use the disk, latency under the target: speeding up",
  off: "no latency target",
  starting: "listening for other programs' disk use",
};

/** The executors' IO pacer: its rate, the disks' latency against the target, and why. */
export function renderIoPacing(pacing: SnapshotIoPacing | undefined): void {
  const dl = byId("io-pacing");
  if (pacing === undefined) {
    dl.replaceChildren(h("div", {}, h("dt", {}, "not reported by this sidecar")));
    return;
  }
  const latency = pacing.latency_ms === null ? "–" : `${pacing.latency_ms.toFixed(2)} ms`;
  const rows: [string, string, string][] = [
    ["rate", pacing.rate_bps === null ? "unlimited" : fmtBytesPerSecond(pacing.rate_bps), "io-rate"],
    ["latency", pacing.target_ms === null ? latency : `${latency} (target ${pacing.target_ms} ms)`, "io-latency"],
    ["why", IO_REASONS[pacing.reason] ?? pacing.reason, "io-reason"],
    ["others", pacing.others_busy ? `busy, ${fmtBytesPerSecond(pacing.others_bps)}` : "quiet", "io-others"],
  ];
  dl.replaceChildren(
    ...rows.map(([name, value, testid]) => h("div", {}, h("dt", {}, name), h("dd", { "data-testid": testid, "data-reason": pacing.reason }, value))),
  );
}

// ---------------------------------------------------------------------------
// Running tasks

export function renderRunning(tasks: readonly LiveTask[], now: number): void {
  const body = byId("running-body");
  reconcile(
    body,
    tasks,
    (t) => String(t.id),
    (t) =>
      h(
        "tr",
        { "data-testid": "running-row", "data-task-id": t.id },
        h("td", { class: "num" }, String(t.id)),
        h("td", { class: "label", title: t.task_type }),
        h("td", { class: "group" }),
        h("td", { class: "prio" }),
        h("td", {}, h("div", { class: "bar" }, h("div", { class: "bar-fill", "data-testid": "progress-bar" }), h("span", { class: "bar-text" }))),
        h("td", { class: "num elapsed" }),
        h("td", { class: "actions" }, h("button", { type: "button", class: "mini", "data-action": "cancel", "data-id": t.id, "data-testid": "cancel" }, "cancel")),
      ),
    (row, t) => {
      const cells = row.children;
      setText(cells[1] as Element, t.parent_id === null ? t.label : `${t.label} ← #${t.parent_id}`);
      setText(cells[2] as Element, t.group ?? "");
      setText(cells[3] as Element, fmtPriority(t.effective_priority));
      setText(cells[5] as Element, t.started_at === null ? "" : fmtDuration(now - t.started_at));
      updateBar(row, t);
    },
  );
  byId("running-empty").hidden = tasks.length > 0;
}

function updateBar(row: HTMLElement, t: LiveTask): void {
  const fill = row.querySelector<HTMLElement>(".bar-fill");
  const text = row.querySelector<HTMLElement>(".bar-text");
  if (fill === null || text === null) return;
  const p = t.progress;
  // Reported by the executor; else an estimate from past durations; else nothing yet.
  const kind = p.reported ? "reported" : p.extrapolated || p.percent > 0 ? "extrapolated" : "none";
  const percent = Math.min(1, Math.max(0, p.percent));
  fill.style.width = fmtPct(percent);
  fill.dataset["kind"] = kind;
  fill.dataset["percent"] = percent.toFixed(3);
  const label = kind === "none" ? "no progress reported" : `${kind === "extrapolated" ? "≈ " : ""}${fmtPct(percent)}`;
  setText(text, p.message ? `${label} · ${p.message}` : label);
}

// ---------------------------------------------------------------------------
// Queued tasks

export function renderQueue(tasks: readonly LiveTask[], total: number): void {
  const body = byId("queue-body");
  reconcile(
    body,
    tasks,
    (t) => String(t.id),
    (t) =>
      h(
        "tr",
        { "data-testid": "queue-row", "data-task-id": t.id },
        h("td", { class: "num" }, String(t.id)),
        h("td", { class: "label", title: t.task_type }),
        h("td", {}, h("span", { class: "badge" })),
        h("td", { class: "group" }),
        h("td", { class: "prio" }),
        h("td", { class: "num" }),
        h(
          "td",
          { class: "actions" },
          h("button", { type: "button", class: "mini", "data-action": "bump", "data-id": t.id, "data-testid": "bump" }),
          h("button", { type: "button", class: "mini", "data-action": "cancel", "data-id": t.id, "data-testid": "cancel" }, "cancel"),
        ),
      ),
    (row, t) => {
      const cells = row.children;
      setText(cells[1] as Element, t.parent_id === null ? t.label : `${t.label} ← #${t.parent_id}`);
      const badge = (cells[2] as Element).firstElementChild as HTMLElement;
      badge.dataset["status"] = t.status;
      setText(badge, t.status);
      setText(cells[3] as Element, t.group ?? "");
      setText(cells[4] as Element, t.effective_priority === t.priority ? fmtPriority(t.priority) : `${fmtPriority(t.priority)} → ${t.effective_priority}`);
      setText(cells[5] as Element, t.retry_count > 0 ? `retry ${t.retry_count}${t.max_retries === null ? "" : `/${t.max_retries}`}` : "");
      const bump = row.querySelector<HTMLButtonElement>('[data-action="bump"]');
      if (bump !== null) {
        const target = bumpTarget(t.priority);
        // task.set_priority applies to pending, paused and blocked tasks only.
        bump.disabled = target === null || t.status === "waiting";
        bump.dataset["priority"] = target === null ? "" : target.name;
        setText(bump, target === null ? "↑" : `↑ ${target.name}`);
      }
    },
  );
  byId("queue-empty").hidden = total > 0;
  setText(byId("queue-total"), total > tasks.length ? `showing ${tasks.length} of ${total}` : total > 0 ? `${total}` : "");
}

// ---------------------------------------------------------------------------
// Domains and groups

export function renderDomains(domains: readonly SnapshotDomain[]): void {
  reconcile(
    byId("domains-body"),
    domains,
    (d) => d.domain,
    (d) =>
      h(
        "tr",
        { "data-testid": "domain-row", "data-domain": d.domain },
        h("td", {}, d.domain),
        h("td", {}, h("span", { class: "badge", "data-testid": "domain-state" })),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "actions" }, h("button", { type: "button", class: "mini", "data-testid": "domain-toggle", "data-domain": d.domain })),
      ),
    (row, d) => {
      const cells = row.children;
      const badge = (cells[1] as Element).firstElementChild as HTMLElement;
      badge.dataset["state"] = d.paused ? "paused" : "active";
      setText(badge, d.paused ? "paused" : "active");
      setText(cells[2] as Element, String(d.running));
      setText(cells[3] as Element, String(d.pending));
      setText(cells[4] as Element, String(d.paused_count ?? ""));
      setText(cells[5] as Element, d.max_concurrency === null ? "–" : String(d.max_concurrency));
      const button = row.querySelector<HTMLButtonElement>("button");
      if (button !== null) {
        button.dataset["action"] = d.paused ? "domain-resume" : "domain-pause";
        setText(button, d.paused ? "resume" : "pause");
      }
    },
  );
}

export function renderGroups(groups: readonly SnapshotGroup[], fair: boolean | undefined, now: number): void {
  reconcile(
    byId("groups-body"),
    groups,
    (g) => g.group,
    (g) =>
      h(
        "tr",
        { "data-testid": "group-row", "data-group": g.group },
        h("td", { class: "label" }, g.group),
        h("td", {}, h("span", { class: "badge", "data-testid": "group-state" })),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h("td", { class: "num" }),
        h(
          "td",
          { class: "actions" },
          h("button", { type: "button", class: "mini", "data-testid": "group-toggle", "data-group": g.group }),
          h("button", { type: "button", class: "mini", "data-action": "group-pause-10s", "data-testid": "group-pause-10s", "data-group": g.group, title: "pause for 10 s (group.pause duration_ms)" }, "10 s"),
        ),
      ),
    (row, g) => {
      const cells = row.children;
      const badge = (cells[1] as Element).firstElementChild as HTMLElement;
      badge.dataset["state"] = g.paused ? "paused" : "active";
      const until = g.paused && g.paused_until !== null ? ` ${Math.max(0, Math.ceil((g.paused_until - now) / 1000))} s` : "";
      setText(badge, g.paused ? `paused${until}` : "active");
      setText(cells[2] as Element, String(g.running));
      setText(cells[3] as Element, String(g.pending + (g.paused_count ?? 0)));
      setText(cells[4] as Element, g.limit === null ? "–" : String(g.limit));
      setText(cells[5] as Element, g.weight === null ? "–" : String(g.weight));
      setText(cells[6] as Element, `${g.min_slots ?? "–"} / ${g.allocated_slots ?? "–"}`);
      const toggle = row.querySelector<HTMLButtonElement>('[data-testid="group-toggle"]');
      if (toggle !== null) {
        toggle.dataset["action"] = g.paused ? "group-resume" : "group-pause";
        setText(toggle, g.paused ? "resume" : "pause");
      }
      const timed = row.querySelector<HTMLButtonElement>('[data-action="group-pause-10s"]');
      if (timed !== null) timed.disabled = g.paused;
    },
  );
  byId("groups-empty").hidden = groups.length > 0;
  setText(byId("groups-fair"), fair === undefined ? "" : fair ? "weighted fairness on" : "fairness off (no weights set)");
}

// ---------------------------------------------------------------------------
// Recent outcomes

const KIND_LABELS: Record<string, string> = { dead_lettered: "dead letter", dead_letter: "dead letter", dependency_failed: "dep. failed" };

export function renderRecent(items: readonly RecentItem[]): void {
  reconcile(
    byId("recent-list"),
    items,
    (r) => r.id,
    (r) =>
      h(
        "li",
        { "data-testid": "recent-item", "data-kind": r.kind, "data-task-id": r.taskId ?? "" },
        h("span", { class: "time" }, fmtClock(r.at)),
        h("span", { class: "kind" }, KIND_LABELS[r.kind] ?? r.kind.replace("_", " ")),
        h("span", { class: "detail", title: r.detail }, r.detail),
      ),
    () => undefined,
  );
}

export { fmtDuration };
