-- The state of ingest adapters that keep state between requests (the Janus adapter: one row per
-- Janus server), so that a restarted service attributes a call's later events as before. A row
-- is replaced only by a state of a higher generation.
CREATE TABLE adapter_states (
    adapter TEXT NOT NULL,
    key TEXT NOT NULL,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (adapter, key)
) WITHOUT ROWID;
