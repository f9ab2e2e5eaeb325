-- The whole schema of the PostgreSQL backend: the same tables and columns as SQLite's three
-- migrations together (analytics; the webhook outbox; claims, webhook subjects and endpoint
-- listings), in PostgreSQL's types. Times are Unix milliseconds and counters are BIGINT
-- (saturated at i64::MAX by the store). Keys and ids are `COLLATE "C"`, so that they sort and
-- compare byte by byte, as in SQLite, whatever the database's locale; pages' cursors depend on it.

-- === Analytics ===

CREATE TABLE events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    type TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    room_sid TEXT COLLATE "C" NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT COLLATE "C" NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT COLLATE "C" NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL,
    payload TEXT NOT NULL
);
-- A room's events in call order, all or of one type; pruning by time.
CREATE INDEX events_by_room ON events (room_sid, position);
CREATE INDEX events_by_room_type ON events (room_sid, type, position);
CREATE INDEX events_by_time ON events (at_ms);

CREATE TABLE rooms (
    sid TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT
);
-- Rooms newest first (all, or open only); pruning ended rooms.
CREATE INDEX rooms_by_start ON rooms (started_at_ms DESC, sid DESC);
CREATE INDEX rooms_open_by_start ON rooms (started_at_ms DESC, sid DESC) WHERE ended_at_ms IS NULL;
CREATE INDEX rooms_by_end ON rooms (ended_at_ms) WHERE ended_at_ms IS NOT NULL;

CREATE TABLE participants (
    room_sid TEXT COLLATE "C" NOT NULL,
    sid TEXT COLLATE "C" NOT NULL,
    identity TEXT NOT NULL,
    joined_at_ms BIGINT,
    active_at_ms BIGINT,
    left_at_ms BIGINT,
    state TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room_sid, sid)
);

CREATE TABLE tracks (
    room_sid TEXT COLLATE "C" NOT NULL,
    sid TEXT COLLATE "C" NOT NULL,
    participant_sid TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    published_at_ms BIGINT,
    unpublished_at_ms BIGINT,
    PRIMARY KEY (room_sid, sid)
);

CREATE TABLE stats_windows (
    id TEXT COLLATE "C" PRIMARY KEY,
    room_sid TEXT COLLATE "C" NOT NULL,
    room_name TEXT NOT NULL,
    participant_sid TEXT COLLATE "C" NOT NULL,
    participant_identity TEXT NOT NULL,
    track_sid TEXT COLLATE "C" NOT NULL,
    direction TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    mime TEXT NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    flushed_at_ms BIGINT NOT NULL,
    covered_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    packets BIGINT NOT NULL,
    packets_lost BIGINT NOT NULL,
    avg_bps DOUBLE PRECISION NOT NULL,
    peak_bps DOUBLE PRECISION NOT NULL,
    resolution_ms BIGINT NOT NULL,
    jitter_max BIGINT NOT NULL,
    rtt_max BIGINT NOT NULL,
    score REAL NOT NULL,
    min_score REAL NOT NULL,
    median_score REAL NOT NULL,
    nacks BIGINT NOT NULL,
    plis BIGINT NOT NULL,
    firs BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    invalid_samples BIGINT NOT NULL
);
-- Stats by room, by participant, by track (in the order the route returns them); pruning.
CREATE INDEX stats_by_room ON stats_windows (room_sid, start_ms);
CREATE INDEX stats_by_participant ON stats_windows (participant_sid, start_ms);
CREATE INDEX stats_by_track ON stats_windows (track_sid, direction, participant_sid, start_ms);
CREATE INDEX stats_by_end ON stats_windows (end_ms);

CREATE TABLE nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    rooms_sequence BIGINT,
    rooms_at_ms BIGINT,
    rooms_payload TEXT
);

CREATE TABLE node_rate_cells (
    node_id TEXT COLLATE "C" NOT NULL,
    second BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    packets_in BIGINT NOT NULL,
    packets_out BIGINT NOT NULL,
    PRIMARY KEY (node_id, second)
);
-- Pruning (a node's seconds are read through the primary key).
CREATE INDEX node_rate_cells_by_second ON node_rate_cells (second);

-- === The webhook outbox ===

CREATE TABLE webhook_endpoints (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT NOT NULL,
    signing TEXT COLLATE "C" NOT NULL,
    api_key TEXT NOT NULL,
    secret TEXT NOT NULL,
    include_events TEXT[] NOT NULL,
    exclude_events TEXT[] NOT NULL,
    enabled BOOLEAN NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE webhook_messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    event TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    resource_key TEXT COLLATE "C" NOT NULL,
    room_sid TEXT COLLATE "C" NOT NULL,
    room_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    participant_sid TEXT COLLATE "C" NOT NULL DEFAULT '',
    participant_identity TEXT NOT NULL DEFAULT '',
    track_sid TEXT COLLATE "C" NOT NULL DEFAULT '',
    egress_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    ingress_id TEXT COLLATE "C" NOT NULL DEFAULT ''
);
-- Pruning messages no delivery refers to.
CREATE INDEX webhook_messages_by_time ON webhook_messages (created_at_ms);

CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_messages (id),
    endpoint_id TEXT COLLATE "C" NOT NULL,
    resource_key TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL,
    retry_base BIGINT NOT NULL,
    next_attempt_at_ms BIGINT,
    last_status_code INTEGER,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL,
    claimed_by TEXT COLLATE "C",
    claim_expires_at_ms BIGINT,
    claim_epoch BIGINT NOT NULL DEFAULT 0
);
-- The head of a queue (endpoint, resource key) is its lowest pending id.
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, resource_key, id)
    WHERE status = 'pending';
-- Due deliveries of an endpoint, lowest ids first; when the next one is due.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_next_due ON webhook_deliveries (endpoint_id, next_attempt_at_ms)
    WHERE status = 'pending';
-- Live claims of a queue: a head waits while another delivery of its queue is claimed.
CREATE INDEX webhook_deliveries_queue_claims ON webhook_deliveries (endpoint_id, resource_key)
    WHERE status = 'pending' AND claimed_by IS NOT NULL;
-- Releasing an owner's claims.
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_by)
    WHERE status = 'pending' AND claimed_by IS NOT NULL;
-- Listing newest first: all, by endpoint (and replays), by status, by event.
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (status, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event, id);
-- Replays select by endpoint, status and message time.
CREATE INDEX webhook_deliveries_replay ON webhook_deliveries (endpoint_id, status, created_at_ms);
-- Pruning finished deliveries, and the messages no delivery refers to.
CREATE INDEX webhook_deliveries_finished_by_time ON webhook_deliveries (created_at_ms)
    WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_id);

CREATE TABLE webhook_attempts (
    delivery_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code INTEGER,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE webhook_endpoint_listings (
    instance_id TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, endpoint_id)
);
CREATE INDEX webhook_endpoint_listings_by_endpoint ON webhook_endpoint_listings (endpoint_id);
CREATE INDEX webhook_endpoint_listings_by_time ON webhook_endpoint_listings (seen_at_ms);
