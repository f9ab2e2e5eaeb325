-- Events are stored once per key, no longer per id (`EventRecord::key`): an event whose id was
-- drawn at random is keyed by its maker's token and output sequence, so that a collision of two
-- random ids drops nothing and each key is appended beside the previous one in the index, and
-- events keep their ids as keys where the id names the event (derived or received). SQLite cannot
-- drop a UNIQUE constraint: the table is rebuilt, positions (the API's cursors) kept, and the
-- stored events keyed by their ids.
CREATE TABLE events_keyed (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
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
INSERT INTO events_keyed (position, key, id, type, at_ms, room_sid, room_name, participant_sid,
    participant_identity, track_sid, node_id, payload)
SELECT position, id, id, type, at_ms, room_sid, room_name, participant_sid, participant_identity,
    track_sid, node_id, payload
FROM events ORDER BY position;
-- Positions never go back, even past events pruned before the rebuild (the rename carries this
-- row over to the new table's name).
DELETE FROM sqlite_sequence WHERE name = 'events_keyed';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'events_keyed', MAX(
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    COALESCE((SELECT MAX(position) FROM events_keyed), 0));
DROP TABLE events;
ALTER TABLE events_keyed RENAME TO events;
CREATE INDEX events_by_room ON events (room_sid, position);
CREATE INDEX events_by_time ON events (at_ms);
