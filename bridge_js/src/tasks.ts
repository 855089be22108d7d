/**
 * Typed tasks: declare an app's task types once, as a map from task type to
 * its payload and result, and the client types `submit`, `run`, `waitFor`,
 * events, workers and records with it.
 *
 * ```ts
 * type Tasks = {
 *   "media::thumb": { payload: { path: string; size: number }; result: { thumb: string } };
 *   "sync::pull": { payload?: undefined; result: { changed: number } };
 * };
 * const client = await connectWebSocket<Tasks>({ endpoint });
 * const { thumb } = await client.run({ task_type: "media::thumb", payload: { path, size: 128 } });
 * ```
 *
 * Nothing here exists at run time. The default map, {@link AnyTasks}, accepts
 * any task type with `unknown` payloads and results: the untyped client.
 *
 * @packageDocumentation
 */

/** A task id: an integer that a task keeps for life. */
export type TaskId = number;

/** What one task type takes and gives. A missing member means `unknown`. */
export interface TaskSpec {
  readonly payload?: unknown;
  readonly result?: unknown;
}

/** An app's task types: task type (`"domain::name"`) to {@link TaskSpec}. */
export type TaskMap = { readonly [taskType: string]: TaskSpec };

/** The untyped default: any task type, payloads and results `unknown`. */
export type AnyTasks = { readonly [taskType: string]: { readonly payload: unknown; readonly result: unknown } };

/** The task type names of a map (`string` for {@link AnyTasks}). */
export type TaskTypeOf<Tasks> = Extract<keyof Tasks, string>;

/** The payload of one task type. */
export type PayloadOf<Tasks, T extends TaskTypeOf<Tasks>> = Tasks[T] extends { readonly payload: infer P } ? P : Tasks[T] extends { readonly payload?: infer P } ? P | undefined : unknown;

/** The result of one task type. */
export type ResultOf<Tasks, T extends TaskTypeOf<Tasks>> = Tasks[T] extends { readonly result?: infer R } ? R : unknown;

declare const taskTypeBrand: unique symbol;

/**
 * A task id that remembers its task type (what `submit` returns), so that
 * `waitFor(id)` knows the result type. A plain number is accepted wherever
 * one is expected.
 */
export type TaskIdOf<T extends string> = TaskId & { readonly [taskTypeBrand]?: T };

/** `payload` as a submission carries it: optional when the payload type allows `undefined`. */
export type PayloadField<P> = undefined extends P ? { readonly payload?: P } : { readonly payload: P };
