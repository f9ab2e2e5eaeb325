-- Events are stored once per key, no longer per id (`EventRecord::key`): an event whose id was
-- drawn at random is keyed by its maker's token and output sequence, so that a collision of two
-- random ids drops nothing and each key is appended beside the previous one in the index, and
-- events keep their ids as keys where the id names the event (derived or received). The stored
-- events are keyed by their ids.
ALTER TABLE events ADD COLUMN key TEXT COLLATE "C";
UPDATE events SET key = id;
ALTER TABLE events ALTER COLUMN key SET NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_key_key UNIQUE (key);
ALTER TABLE events DROP CONSTRAINT events_id_key;
