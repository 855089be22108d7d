/**
 * React bindings (`taskmill-bridge/react`): hooks over a task store
 * (`createTaskStore`), built on `useSyncExternalStore`. React 18 or later is
 * an optional peer dependency: only this entry imports it.
 *
 * ```tsx
 * const store = createTaskStore(client);            // once, outside components
 * root.render(<TaskmillProvider store={store}><Jobs /></TaskmillProvider>);
 *
 * function Jobs() {
 *   const running = useTasks({ status: "running" });
 *   return running.map((t) => <progress key={t.id} value={t.progress.percent} />);
 * }
 * ```
 *
 * Every hook re-renders only when what it returns changed: `useTask(id)`
 * keeps the same object until that task changes, `useTasks(filter)` the same
 * array until one of its tasks does.
 *
 * @packageDocumentation
 */

import { createContext, createElement, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from "react";
import { estimateProgress, type LiveTask } from "./livetasks.js";
import type { TaskStore, TaskStoreState } from "./store.js";
import type { AnyTasks, TaskId, TaskTypeOf } from "./tasks.js";
import type { Tags, TaskStatus } from "./types.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one context for stores of any task map.
const StoreContext = createContext<TaskStore<any> | null>(null);

/** Makes `store` the one the hooks below use when they are not given one. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a store of any task map.
export function TaskmillProvider(props: { readonly store: TaskStore<any>; readonly children?: ReactNode }): ReactNode {
  return createElement(StoreContext.Provider, { value: props.store }, props.children);
}

function useStore<Tasks>(store: TaskStore<Tasks> | undefined): TaskStore<Tasks> {
  const fromContext = useContext(StoreContext) as TaskStore<Tasks> | null;
  const found = store ?? fromContext;
  if (found === null) throw new Error("taskmill-bridge/react: pass a store, or render inside <TaskmillProvider store={createTaskStore(client)}>");
  return found;
}

/** The whole store state (re-renders on every change). */
export function useTaskmill<Tasks = AnyTasks>(store?: TaskStore<Tasks>): TaskStoreState<Tasks> {
  const s = useStore(store);
  return useSyncExternalStore(s.subscribe, s.getSnapshot, s.getSnapshot);
}

/** One task, or undefined when the store does not hold it (re-renders only when that task changes). */
export function useTask<Tasks = AnyTasks>(id: TaskId | null | undefined, store?: TaskStore<Tasks>): LiveTask<Tasks> | undefined {
  const s = useStore(store);
  const select = (): LiveTask<Tasks> | undefined => (id === null || id === undefined ? undefined : s.getSnapshot().byId.get(id));
  return useSyncExternalStore(s.subscribe, select, select);
}

/** Which tasks `useTasks` returns; every field optional, all AND-ed. */
export interface TaskFilter<Tasks = AnyTasks> {
  /** A list of the store (`"active"` = running then queued), or task statuses. Defaults to every task, running first. */
  readonly status?: "running" | "queued" | "finished" | "active" | TaskStatus | readonly TaskStatus[];
  readonly task_type?: TaskTypeOf<Tasks> | readonly TaskTypeOf<Tasks>[];
  readonly domain?: string;
  readonly group?: string;
  /** Tasks carrying all these tags. */
  readonly tags?: Tags;
  /** A predicate of your own; keep it stable (module level or `useCallback`) to avoid recomputing. */
  readonly where?: (task: LiveTask<Tasks>) => boolean;
  /** At most this many. */
  readonly limit?: number;
}

/** Applies a {@link TaskFilter} to a store state. */
export function filterTasks<Tasks>(state: TaskStoreState<Tasks>, filter: TaskFilter<Tasks>): LiveTask<Tasks>[] {
  const status = filter.status;
  const source =
    status === "running" || status === "queued" || status === "finished"
      ? state[status]
      : status === "active"
        ? [...state.running, ...state.queued]
        : [...state.running, ...state.queued, ...state.finished];
  const statuses = typeof status === "string" && !["running", "queued", "finished", "active"].includes(status) ? [status] : Array.isArray(status) ? (status as readonly string[]) : null;
  const types = filter.task_type === undefined ? null : ([] as readonly string[]).concat(filter.task_type);
  const tags = filter.tags === undefined ? [] : Object.entries(filter.tags);
  const out = source.filter(
    (t) =>
      (statuses === null || statuses.includes(t.status)) &&
      (types === null || types.includes(t.task_type)) &&
      (filter.domain === undefined || t.domain === filter.domain) &&
      (filter.group === undefined || t.group === filter.group) &&
      tags.every(([k, v]) => t.tags[k] === v) &&
      (filter.where === undefined || filter.where(t)),
  );
  return filter.limit === undefined ? out : out.slice(0, filter.limit);
}

/**
 * The tasks matching `filter`. The array keeps its identity while the tasks
 * in it are the same objects, so a list re-renders only when one changes.
 */
export function useTasks<Tasks = AnyTasks>(filter: TaskFilter<Tasks> = {}, store?: TaskStore<Tasks>): readonly LiveTask<Tasks>[] {
  const s = useStore(store);
  const { where, ...rest } = filter;
  const key = JSON.stringify(rest);
  const cache = useRef<{ state: TaskStoreState<Tasks>; key: string; where: unknown; result: readonly LiveTask<Tasks>[] } | null>(null);
  const select = (): readonly LiveTask<Tasks>[] => {
    const state = s.getSnapshot();
    const last = cache.current;
    if (last !== null && last.state === state && last.key === key && last.where === where) return last.result;
    const next = filterTasks(state, filter);
    const result = last !== null && last.result.length === next.length && last.result.every((t, i) => t === next[i]) ? last.result : next;
    cache.current = { state, key, where, result };
    return result;
  };
  return useSyncExternalStore(s.subscribe, select, select);
}

/**
 * A running task's progress moved on between progress events (see
 * `estimateProgress`), re-rendering every `intervalMs` while it runs: for
 * bars that glide instead of jumping. Finished or queued tasks do not tick.
 */
export function useEstimatedProgress(task: LiveTask<AnyTasks> | undefined, intervalMs = 200): number {
  const [now, setNow] = useState(() => Date.now());
  const running = task?.status === "running" && task.progress.rate > 0;
  useEffect(() => {
    if (!running) return undefined;
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [running, intervalMs]);
  return task === undefined ? 0 : estimateProgress(task, Math.max(now, task.progress.at ?? 0));
}
