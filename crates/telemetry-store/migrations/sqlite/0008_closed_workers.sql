-- A closed stats worker's row is kept, closed, until its reap (`worker_cleanup_wait` after
-- `closed_at_ms`), so that a restart restores it closed and its late samples land in windows as
-- they would have without the restart; the flush that reaps it deletes the row. NULL: open.
ALTER TABLE live_workers ADD COLUMN closed_at_ms INTEGER;
