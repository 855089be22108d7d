-- taskmill schema, version 7.

-- Task ids are given by the store (store/ids.py) instead of AUTOINCREMENT,
-- which rewrites its sqlite_sequence row at every insert: one more page in
-- the WAL at every submit's commit. Ids are still never reused: the store
-- starts above the largest id in tasks, history and this floor, and raises
-- the floor before history rows are deleted. The floor starts at the sequence
-- AUTOINCREMENT kept. (store/ids.py then takes the keyword out of the table's
-- schema, where SQLite allows it.)
CREATE TABLE counters (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('task_id_floor', max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0),
    coalesce((SELECT max(id) FROM tasks), 0),
    coalesce((SELECT max(id) FROM history), 0)
));
