-- taskmill schema, version 3.

-- Where task code failed: the task's own frames, bounded (scheduler/tracebacks.py),
-- kept with last_error on the active row (between retries) and in history.
ALTER TABLE tasks ADD COLUMN traceback TEXT;
ALTER TABLE history ADD COLUMN traceback TEXT;
