-- Call quality: the E-model MOS estimate of audio windows, and the quality issues the core
-- detects (one row per issue: written when it opens, completed when it closes).
ALTER TABLE stats_windows ADD COLUMN mos REAL;

CREATE TABLE issues (
    id TEXT PRIMARY KEY,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    -- A JSON array of participant sids.
    affected TEXT NOT NULL
);
CREATE INDEX issues_by_start ON issues (started_at_ms, id);
CREATE INDEX issues_by_room ON issues (room_sid, started_at_ms, id);
CREATE INDEX issues_open ON issues (started_at_ms, id) WHERE ended_at_ms IS NULL;
