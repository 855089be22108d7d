/**
 * How the store's tasks become the dashboard's rows.
 */

import type { LiveTask } from "taskmill-bridge";

/** One line of "recent completions and failures". */
export interface RecentItem {
  readonly id: string;
  readonly at: number;
  /** The task's final status (completed, failed, dead_letter, cancelled...). */
  readonly kind: string;
  readonly taskId: number;
  readonly detail: string;
}

function short(value: unknown, max = 60): string {
  const text = typeof value === "string" ? value : (JSON.stringify(value) ?? "");
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A finished task from the store, as a "recent" line. */
export function recentFromTask(t: LiveTask): RecentItem {
  const who = `#${t.id} ${t.label}`;
  let detail: string;
  switch (t.status) {
    case "completed":
      detail = `${who} in ${t.duration_ms ?? "?"} ms → ${short(t.result)}`;
      break;
    case "failed":
    case "dead_letter":
      detail = `${who} after ${t.retry_count} ${t.retry_count === 1 ? "retry" : "retries"}: ${t.error ?? "failed"}`;
      break;
    case "cancelled":
      detail = `${who}${t.error ? ` (${t.error})` : ""}`;
      break;
    default:
      detail = `${who}${t.error ? `: ${t.error}` : ""}`;
  }
  return { id: `t${t.id}-${t.finished_at ?? 0}`, at: t.finished_at ?? 0, kind: t.status, taskId: t.id, detail };
}
