-- taskmill schema, version 5.

-- Tasks are found by a 64-bit hash of (task_type, key) instead of by the key
-- text: an index of 64-character keys made every insert and delete touch a
-- random page of a large B-tree (store/schema.py, key_hash). Uniqueness of
-- (task_type, key) among active tasks is kept by submission, which looks the
-- key up before inserting (one writer: store/submit.py).
ALTER TABLE tasks ADD COLUMN key_hash INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET key_hash = taskmill_key_hash(task_type, key);
DROP INDEX tasks_key;
CREATE INDEX tasks_key_hash ON tasks (key_hash);

ALTER TABLE history ADD COLUMN key_hash INTEGER NOT NULL DEFAULT 0;
UPDATE history SET key_hash = taskmill_key_hash(task_type, key);
DROP INDEX history_key;
CREATE INDEX history_key_hash ON history (key_hash, history_id);
