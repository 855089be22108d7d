-- taskmill schema, version 1.
-- Active tasks live in `tasks`; reaching a terminal status moves the row to
-- `history` (same task id, its own history_id) and frees the dedup key.

CREATE TABLE tasks (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    task_type             TEXT    NOT NULL,                   -- 'domain::name'
    domain                TEXT    NOT NULL,
    key                   TEXT    NOT NULL,                   -- dedup key, unique per type
    label                 TEXT    NOT NULL,
    priority              INTEGER NOT NULL,                   -- 0 most urgent
    status                TEXT    NOT NULL,                   -- pending running paused waiting blocked
    phase                 TEXT    NOT NULL DEFAULT 'execute', -- or 'finalize' (parents)
    delayed               INTEGER NOT NULL DEFAULT 0,         -- 1 while run_after is in the future
    payload               TEXT,                               -- JSON
    memo                  TEXT,                               -- JSON, what execute returned (parents)
    group_key             TEXT,
    parent_id             INTEGER,
    fail_fast             INTEGER NOT NULL DEFAULT 1,
    retry_count           INTEGER NOT NULL DEFAULT 0,
    max_retries           INTEGER NOT NULL,
    retry_policy          TEXT,                               -- JSON RetryPolicy
    last_error            TEXT,
    created_at            INTEGER NOT NULL,                   -- epoch ms
    started_at            INTEGER,
    run_after             INTEGER,
    dispatch_count        INTEGER NOT NULL DEFAULT 0,         -- guards stale completions
    expected_read         INTEGER NOT NULL DEFAULT 0,
    expected_write        INTEGER NOT NULL DEFAULT 0,
    expected_net_rx       INTEGER NOT NULL DEFAULT 0,
    expected_net_tx       INTEGER NOT NULL DEFAULT 0,
    requeue               INTEGER NOT NULL DEFAULT 0,
    requeue_priority      INTEGER,
    requeue_payload       TEXT,
    ttl_ms                INTEGER,
    ttl_from              TEXT    NOT NULL DEFAULT 'submission',
    expires_at            INTEGER,
    on_dep_failure        TEXT    NOT NULL DEFAULT 'cancel',
    depends_on            TEXT    NOT NULL DEFAULT '[]',      -- JSON ids as submitted
    recurring_interval_ms INTEGER,
    schedule_id           INTEGER,                            -- id of the first occurrence
    recurring_max         INTEGER,
    recurring_count       INTEGER NOT NULL DEFAULT 0,
    recurring_paused      INTEGER NOT NULL DEFAULT 0,
    pause_reasons         INTEGER NOT NULL DEFAULT 0,         -- bitmask, see scheduler.states
    pause_duration_ms     INTEGER NOT NULL DEFAULT 0,
    paused_at             INTEGER,
    tags                  TEXT    NOT NULL DEFAULT '{}'       -- JSON copy of task_tags for records
);

CREATE UNIQUE INDEX tasks_key ON tasks (task_type, key);
-- "Next task to run" is a seek on this index.
CREATE INDEX tasks_ready ON tasks (priority, id) WHERE status = 'pending' AND delayed = 0;
CREATE INDEX tasks_ready_group ON tasks (group_key, priority, id)
    WHERE status = 'pending' AND delayed = 0 AND group_key IS NOT NULL;
CREATE INDEX tasks_delayed ON tasks (run_after) WHERE status = 'pending' AND delayed = 1;
-- Every status but pending (the common case) is indexed, for counts and lookups.
CREATE INDEX tasks_other ON tasks (status, domain) WHERE status != 'pending';
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_group ON tasks (group_key, status) WHERE group_key IS NOT NULL;
CREATE INDEX tasks_expires ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_schedule ON tasks (schedule_id) WHERE schedule_id IS NOT NULL;

CREATE TABLE task_tags (
    task_id INTEGER NOT NULL,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    PRIMARY KEY (task_id, key)
) WITHOUT ROWID;
CREATE INDEX task_tags_kv ON task_tags (key, value);

CREATE TABLE task_deps (
    task_id       INTEGER NOT NULL,   -- waits for ...
    depends_on_id INTEGER NOT NULL,   -- ... this one
    PRIMARY KEY (task_id, depends_on_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_depends_on ON task_deps (depends_on_id);

CREATE TABLE history (
    history_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    id             INTEGER NOT NULL,                 -- the task id, kept for life
    task_type      TEXT    NOT NULL,
    domain         TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    label          TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    payload        TEXT,
    result         TEXT,
    memo           TEXT,
    group_key      TEXT,
    parent_id      INTEGER,
    fail_fast      INTEGER NOT NULL DEFAULT 1,
    retry_count    INTEGER NOT NULL DEFAULT 0,
    max_retries    INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER NOT NULL,
    duration_ms    INTEGER,
    run_after      INTEGER,
    ttl_ms         INTEGER,
    ttl_from       TEXT    NOT NULL DEFAULT 'submission',
    expires_at     INTEGER,
    expected_read  INTEGER NOT NULL DEFAULT 0,
    expected_write INTEGER NOT NULL DEFAULT 0,
    expected_net_rx INTEGER NOT NULL DEFAULT 0,
    expected_net_tx INTEGER NOT NULL DEFAULT 0,
    actual_read    INTEGER NOT NULL DEFAULT 0,
    actual_write   INTEGER NOT NULL DEFAULT 0,
    actual_net_rx  INTEGER NOT NULL DEFAULT 0,
    actual_net_tx  INTEGER NOT NULL DEFAULT 0,
    depends_on     TEXT    NOT NULL DEFAULT '[]',
    tags           TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX history_task ON history (id, history_id);
CREATE INDEX history_type ON history (task_type, history_id);
CREATE INDEX history_key ON history (task_type, key, history_id);
CREATE INDEX history_status ON history (status, history_id);
CREATE INDEX history_parent ON history (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE history_tags (
    history_id INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (history_id, key)
) WITHOUT ROWID;
CREATE INDEX history_tags_kv ON history_tags (key, value);

CREATE TABLE paused_domains (
    domain    TEXT    NOT NULL PRIMARY KEY,
    paused_at INTEGER NOT NULL
);

CREATE TABLE paused_groups (
    group_key TEXT    NOT NULL PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    resume_at INTEGER
);
