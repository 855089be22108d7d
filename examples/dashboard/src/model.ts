/**
 * The data the dashboard shows, and how events and records become it.
 */

import type { EventOf, HistoryTaskRecord, Snapshot, SnapshotDomain, SnapshotGroup, TaskmillEvent } from "taskmill-bridge";

/** Snapshot fields the sidecar sends beyond what taskmill-bridge types (docs/protocol.md "Addition"s). */
export type DomainRow = SnapshotDomain & { readonly paused_count?: number };
export type GroupRow = SnapshotGroup & { readonly paused_count?: number };
export type DashboardSnapshot = Omit<Snapshot, "domains" | "groups"> & {
  readonly domains: readonly DomainRow[];
  readonly groups: readonly GroupRow[];
  readonly running_count?: number;
  readonly seq?: number;
  readonly fair?: boolean;
  /** Whether resource monitoring is on. */
  readonly monitoring?: boolean;
  /** Throttle policy: [priority, pressure above which that priority and less urgent work is held]. */
  readonly throttle?: readonly (readonly [number, number])[];
};

/** A running task's progress, from a `progress` event or the snapshot. */
export interface Progress {
  readonly percent: number;
  readonly message: string | null;
  /** Reported by the executor. */
  readonly reported: boolean;
  /** Estimated from the average duration of the type's last completions. */
  readonly extrapolated: boolean;
}

/** One line of "recent completions and failures". */
export interface RecentItem {
  readonly id: string;
  readonly at: number;
  /** The event kind or history status; `retrying` for a `failed` event with `will_retry`. */
  readonly kind: string;
  readonly taskId: number | null;
  readonly detail: string;
}

/** Task events listed under "recent". */
export const RECENT_KINDS = ["completed", "failed", "dead_lettered", "cancelled", "expired", "dependency_failed", "preempted"] as const;
export type RecentKind = (typeof RECENT_KINDS)[number];

export function isRecentEvent(e: TaskmillEvent): e is EventOf<RecentKind> {
  return (RECENT_KINDS as readonly string[]).includes(e.kind);
}

function short(value: unknown, max = 60): string {
  const text = typeof value === "string" ? value : JSON.stringify(value) ?? "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function recentFromEvent(e: EventOf<RecentKind>): RecentItem {
  const who = `#${e.task_id} ${e.label}`;
  let detail: string;
  switch (e.kind) {
    case "completed":
      detail = `${who} in ${e.duration_ms} ms → ${short(e.result)}`;
      break;
    case "failed":
      detail = `${who} attempt ${e.attempt}: ${e.error}${e.will_retry ? ` (retry in ${e.retry_after_ms ?? 0} ms)` : " (no retry)"}`;
      break;
    case "dead_lettered":
      detail = `${who} after ${e.retry_count} retries: ${e.error}`;
      break;
    case "cancelled":
      detail = `${who} (${e.reason})`;
      break;
    case "expired":
      detail = `${who} after ${e.age_ms} ms in the queue`;
      break;
    case "dependency_failed":
      detail = `${who}: dependency #${e.failed_dependency} failed`;
      break;
    case "preempted":
      detail = e.by_task_id === null ? `${who} (scheduler paused)` : `${who} by #${e.by_task_id}`;
      break;
  }
  // A failure that will be retried is shown apart from a final one.
  const kind = e.kind === "failed" && e.will_retry ? "retrying" : e.kind;
  return { id: `e${e.seq}-${e.task_id}`, at: e.at, kind, taskId: e.task_id, detail };
}

export function recentFromHistory(r: HistoryTaskRecord): RecentItem {
  const who = `#${r.id} ${r.label}`;
  const detail =
    r.status === "completed"
      ? `${who} in ${r.duration_ms ?? "?"} ms → ${short(r.result)}`
      : `${who}${r.last_error ? `: ${r.last_error}` : ""}`;
  return { id: `h${r.history_id}`, at: r.finished_at, kind: r.status, taskId: r.id, detail };
}
