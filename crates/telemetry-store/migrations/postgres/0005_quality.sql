-- Call quality: the E-model MOS estimate of audio windows, and the quality issues the core
-- detects (one row per issue: written when it opens, completed when it closes).
-- (Numbered 0005: 0004 is the cluster work's; the runner applies files in list order.)
ALTER TABLE stats_windows ADD COLUMN mos DOUBLE PRECISION;

CREATE TABLE issues (
    id TEXT COLLATE "C" PRIMARY KEY,
    room_sid TEXT COLLATE "C" NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT COLLATE "C" NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT COLLATE "C" NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    -- A JSON array of participant sids.
    affected TEXT NOT NULL
);
CREATE INDEX issues_by_start ON issues (started_at_ms, id);
CREATE INDEX issues_by_room ON issues (room_sid, started_at_ms, id);
CREATE INDEX issues_open ON issues (started_at_ms, id) WHERE ended_at_ms IS NULL;
