-- Each writer's highest write number (`WriteMark`), stored in the transaction of the write that
-- carries it: a retried write at or below it was committed already and is not applied again, so
-- node rate cells (added to) are never counted twice. `at_ms`: when the mark last moved, for
-- pruning.
CREATE TABLE write_marks (
    writer TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;
