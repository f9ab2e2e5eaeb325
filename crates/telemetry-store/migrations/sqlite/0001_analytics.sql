-- Analytics: events in call order, the rooms/participants/tracks they imply, coalesced stats
-- windows, node room states and node rate cells.

CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT NOT NULL,
    node_id TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_by_room ON events (room_sid, position);
CREATE INDEX events_by_time ON events (at_ms);

CREATE TABLE rooms (
    sid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER
);
CREATE INDEX rooms_by_start ON rooms (started_at_ms DESC, sid DESC);

CREATE TABLE participants (
    room_sid TEXT NOT NULL,
    sid TEXT NOT NULL,
    identity TEXT NOT NULL,
    joined_at_ms INTEGER,
    active_at_ms INTEGER,
    left_at_ms INTEGER,
    state TEXT NOT NULL,
    PRIMARY KEY (room_sid, sid)
);

CREATE TABLE tracks (
    room_sid TEXT NOT NULL,
    sid TEXT NOT NULL,
    participant_sid TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    published_at_ms INTEGER,
    unpublished_at_ms INTEGER,
    PRIMARY KEY (room_sid, sid)
);

CREATE TABLE stats_windows (
    id TEXT PRIMARY KEY,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    node_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    flushed_at_ms INTEGER NOT NULL,
    covered_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    packets_lost INTEGER NOT NULL,
    avg_bps REAL NOT NULL,
    peak_bps REAL NOT NULL,
    resolution_ms INTEGER NOT NULL,
    jitter_max INTEGER NOT NULL,
    rtt_max INTEGER NOT NULL,
    score REAL NOT NULL,
    min_score REAL NOT NULL,
    median_score REAL NOT NULL,
    nacks INTEGER NOT NULL,
    plis INTEGER NOT NULL,
    firs INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    invalid_samples INTEGER NOT NULL
);
CREATE INDEX stats_by_room ON stats_windows (room_sid, start_ms);
CREATE INDEX stats_by_track ON stats_windows (track_sid, start_ms);
CREATE INDEX stats_by_end ON stats_windows (end_ms);

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    rooms_sequence INTEGER,
    rooms_at_ms INTEGER,
    rooms_payload TEXT
);

CREATE TABLE node_rate_cells (
    node_id TEXT NOT NULL,
    second INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    packets_in INTEGER NOT NULL,
    packets_out INTEGER NOT NULL,
    PRIMARY KEY (node_id, second)
) WITHOUT ROWID;
