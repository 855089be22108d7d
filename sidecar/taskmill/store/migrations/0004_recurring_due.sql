-- taskmill schema, version 4.

-- When a recurring occurrence was due. run_after moves when the occurrence is
-- retried or deferred by a rate limit; the schedule's cadence must not: the next
-- occurrence is due one interval after this one was (store/recurring.py).
ALTER TABLE tasks ADD COLUMN recurring_due_at INTEGER;
