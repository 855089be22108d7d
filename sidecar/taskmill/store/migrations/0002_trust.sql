-- taskmill schema, version 2.

-- Task types a remote worker declared inline (worker.register with a config):
-- remembered so their queued tasks wait in `pending` across a restart, until a
-- worker serves them again, instead of failing for want of an executor.
CREATE TABLE worker_types (
    task_type   TEXT    NOT NULL PRIMARY KEY,
    config      TEXT    NOT NULL,                   -- JSON, the config-file schema of a type
    declared_at INTEGER NOT NULL                    -- epoch ms
);

-- With aging, a level's candidates go oldest first, where "old" does not count
-- time spent paused: created_at + pause_duration_ms. For tasks never paused
-- that is id order (tasks_ready); tasks paused once are out of that order and
-- are walked on their own index, which holds only them.
CREATE INDEX tasks_ready_aged ON tasks (priority, created_at + pause_duration_ms, id)
    WHERE status = 'pending' AND delayed = 0 AND pause_duration_ms > 0;
CREATE INDEX tasks_ready_aged_group ON tasks (group_key, priority, created_at + pause_duration_ms, id)
    WHERE status = 'pending' AND delayed = 0 AND pause_duration_ms > 0 AND group_key IS NOT NULL;

-- A dead-lettered task retried keeps its retry policy (max_retries was kept already).
ALTER TABLE history ADD COLUMN retry_policy TEXT;
