-- A stats worker's quality detector states (a JSON array of its media tracks' detectors,
-- publications and mutes; `[]` when it holds none), written by the worker's first flush and by
-- the flushes that change them, and kept only with the record of the worker they belong to (same
-- created_at_ms): a rejoin's record clears it, a reap deletes it with the row. A restart or a
-- cluster take-over puts it back, so that a bad run under way at the cut opens its issue as it
-- would have without the cut. NULL: no flush of this worker yet.
ALTER TABLE live_workers ADD COLUMN quality TEXT;
