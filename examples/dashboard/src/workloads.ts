/**
 * The demo workloads behind the "Submit demo work" buttons. Each builds
 * `task.submit` params for the sidecar's built-in `demo` domain (`--demo`).
 * Every submission gets a fresh key, so pressing a button twice queues the
 * work twice instead of being deduplicated.
 */

import type { PriorityName, SubmitParams } from "taskmill-bridge";

export interface WorkloadOptions {
  readonly priority: PriorityName;
  /** Empty: no group. */
  readonly group: string;
}

export interface Workload {
  /** The button's id in index.html. */
  readonly button: string;
  readonly describe: string;
  build(options: WorkloadOptions, batch: string): SubmitParams[];
}

const MiB = 1024 * 1024;

function common(options: WorkloadOptions): Pick<SubmitParams, "priority" | "group"> {
  return options.group === "" ? { priority: options.priority } : { priority: options.priority, group: options.group };
}

export const WORKLOADS: readonly Workload[] = [
  {
    button: "wl-sleep20",
    describe: "20 demo::sleep tasks of 2 to 4 s, reporting progress in 20 steps",
    build: (o, batch) =>
      Array.from({ length: 20 }, (_, i) => ({
        task_type: "demo::sleep",
        payload: { ms: 2000 + (i % 5) * 500, steps: 20 },
        key: `${batch}-sleep-${i}`,
        label: `sleep ${i + 1}/20`,
        ...common(o),
      })),
  },
  {
    button: "wl-fanout",
    describe: "a demo::fanout parent with 8 demo::sleep children (the parent waits, then finalizes)",
    build: (o, batch) => [{ task_type: "demo::fanout", payload: { children: 8, child_ms: 2500 }, key: `${batch}-fanout`, label: "fanout ×8", ...common(o) }],
  },
  {
    button: "wl-io",
    describe: "4 demo::io tasks writing then reading 16 MiB each, with their expected IO declared",
    build: (o, batch) =>
      Array.from({ length: 4 }, (_, i) => ({
        task_type: "demo::io",
        payload: { read_bytes: 16 * MiB, write_bytes: 16 * MiB },
        key: `${batch}-io-${i}`,
        label: `io ${i + 1}/4`,
        expected_io: { disk_read: 16 * MiB, disk_write: 16 * MiB },
        ...common(o),
      })),
  },
  {
    button: "wl-flaky",
    describe: "a demo::fail task that fails twice, then completes on its third attempt",
    build: (o, batch) => [
      {
        task_type: "demo::fail",
        payload: { times: 2, message: "flaky upstream (simulated)" },
        key: `${batch}-flaky`,
        label: "flaky call",
        retry: { max_retries: 3, backoff: "constant", base_ms: 800 },
        ...common(o),
      },
    ],
  },
  {
    button: "wl-failing",
    describe: "a demo::fail task that always fails: 2 retries, then the dead-letter queue",
    build: (o, batch) => [
      {
        task_type: "demo::fail",
        payload: { times: -1, message: "always fails (simulated)" },
        key: `${batch}-failing`,
        label: "doomed call",
        retry: { max_retries: 2, backoff: "exponential", base_ms: 400 },
        ...common(o),
      },
    ],
  },
  {
    button: "wl-realtime",
    describe: "a realtime demo::sleep of 3 s: it preempts less urgent running work, which resumes after it",
    // Realtime ignores the priority selector: preempting is the point.
    build: (o, batch) => [{ task_type: "demo::sleep", payload: { ms: 3000, steps: 30 }, key: `${batch}-realtime`, label: "realtime job", ...common(o), priority: "realtime" }],
  },
];
