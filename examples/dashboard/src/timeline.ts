/**
 * The timeline: the last five minutes of completions per second, pressure
 * and disk IO, one sample a second, as three sparklines in plain SVG (no
 * chart library). main.ts feeds it from `scheduler.metrics` (completions,
 * turned into a rate here) and the store's state (pressure, sampled disk
 * read + write bytes per second).
 */

import type { Metrics, TaskStoreState } from "taskmill-bridge";

export interface Sample {
  /** Epoch milliseconds. */
  readonly at: number;
  /** Tasks completed per second, averaged over the last few seconds. */
  readonly throughput: number;
  /** Aggregate pressure, 0..1. */
  readonly pressure: number;
  /** Disk read + write, bytes per second (0 with resource monitoring off). */
  readonly ioBps: number;
}

interface Series {
  readonly key: "throughput" | "pressure" | "ioBps";
  readonly label: string;
  readonly colour: string;
  /** A fixed top of the scale, or null to scale to the largest value shown. */
  readonly max: number | null;
  readonly format: (value: number) => string;
}

const SVG = "http://www.w3.org/2000/svg";
const RATE_WINDOW_MS = 5000;
const WIDTH = 600;
const HEIGHT = 40;

const SERIES: readonly Series[] = [
  { key: "throughput", label: "completed / s", colour: "#23a26d", max: null, format: (v) => v.toFixed(1) },
  { key: "pressure", label: "pressure", colour: "#d99a1e", max: 1, format: (v) => v.toFixed(2) },
  { key: "ioBps", label: "disk IO", colour: "#3b6fe0", max: null, format: fmtRate },
];

function fmtRate(bps: number): string {
  const units = ["B/s", "KB/s", "MB/s", "GB/s"];
  let value = bps;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export class Timeline {
  private readonly samples: Sample[] = [];
  /** Recent counter readings, for a rate over {@link RATE_WINDOW_MS} (one-second rates jump between 0 and 3). */
  private readonly counts: { readonly at: number; readonly completed: number }[] = [];
  private readonly rows = new Map<Series["key"], { line: SVGPolylineElement; area: SVGPolygonElement; value: HTMLElement; top: HTMLElement }>();

  constructor(
    private readonly root: HTMLElement,
    private readonly windowMs = 5 * 60_000,
  ) {
    for (const series of SERIES) {
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("class", "tl-plot");
      const area = document.createElementNS(SVG, "polygon");
      area.setAttribute("fill", series.colour);
      area.setAttribute("fill-opacity", "0.15");
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", series.colour);
      line.setAttribute("stroke-width", "1.5");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(area, line);
      const row = document.createElement("div");
      row.className = "tl-row";
      row.dataset["series"] = series.key;
      const label = document.createElement("span");
      label.className = "tl-label";
      label.textContent = series.label;
      const value = document.createElement("strong");
      value.className = "tl-value";
      value.dataset["testid"] = "timeline-value";
      const top = document.createElement("span");
      top.className = "tl-top muted small";
      const legend = document.createElement("div");
      legend.className = "tl-legend";
      legend.append(label, value, top);
      row.append(legend, svg);
      root.append(row);
      this.rows.set(series.key, { line, area, value, top });
    }
    root.dataset["samples"] = "0";
  }

  /** One sample: `completed` is the counter since start (turned into a rate over the last seconds). */
  record(at: number, completed: number, pressure: number, ioBps: number): void {
    const last = this.counts[this.counts.length - 1];
    // A restarted sidecar starts its counters at zero again: start the rate over.
    if (last !== undefined && (at <= last.at || completed < last.completed)) this.counts.length = 0;
    this.counts.push({ at, completed });
    while (this.counts.length > 2 && (this.counts[1]?.at ?? at) <= at - RATE_WINDOW_MS) this.counts.shift();
    const first = this.counts[0];
    if (first === undefined || first.at === at) return;
    const throughput = (completed - first.completed) / ((at - first.at) / 1000);
    this.samples.push({ at, throughput, pressure, ioBps });
    while (this.samples.length > 0 && (this.samples[0]?.at ?? at) < at - this.windowMs) this.samples.shift();
    this.render(at);
  }

  /** The samples shown, oldest first (for tests and the console). */
  get shown(): readonly Sample[] {
    return this.samples;
  }

  private render(now: number): void {
    const start = now - this.windowMs;
    for (const series of SERIES) {
      const row = this.rows.get(series.key);
      if (row === undefined) continue;
      const values = this.samples.map((s) => s[series.key]);
      const top = series.max ?? Math.max(...values, series.key === "throughput" ? 1 : 1024);
      const points = this.samples.map((s) => {
        const x = ((s.at - start) / this.windowMs) * WIDTH;
        const y = HEIGHT - (Math.min(s[series.key], top) / top) * (HEIGHT - 2);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      row.line.setAttribute("points", points.join(" "));
      const first = points[0]?.split(",")[0] ?? "0";
      const last = points[points.length - 1]?.split(",")[0] ?? "0";
      row.area.setAttribute("points", points.length > 0 ? `${first},${HEIGHT} ${points.join(" ")} ${last},${HEIGHT}` : "");
      row.value.textContent = series.format(values[values.length - 1] ?? 0);
      row.top.textContent = series.max === null ? `max ${series.format(top)}` : "";
    }
    this.root.dataset["samples"] = String(this.samples.length);
  }
}

/** What main.ts passes to {@link Timeline.record}, from the metrics and the store. */
export function sampleOf(metrics: Metrics, state: TaskStoreState): [completed: number, pressure: number, ioBps: number] {
  const resources = state.snapshot?.resources;
  const io = resources === undefined ? 0 : resources.disk_read_bps + resources.disk_write_bps;
  return [metrics.counters.completed, state.pressure, io];
}
