-- The state of each open stats worker (guards, connected state, the node that made it), so that
-- a restarted service carries on the calls in progress. One row per room and participant; a
-- closed worker's row is deleted.
CREATE TABLE live_workers (
    room_id TEXT COLLATE "C" NOT NULL,
    participant_id TEXT COLLATE "C" NOT NULL,
    room_name TEXT NOT NULL,
    identity TEXT NOT NULL,
    node_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    connected BOOLEAN NOT NULL,
    guards TEXT NOT NULL,
    PRIMARY KEY (room_id, participant_id)
);
