-- The webhook outbox: endpoints, messages (the exact body sent), one delivery per message and
-- endpoint (ordered by id within an endpoint and resource key), and every attempt.

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    signing TEXT NOT NULL,
    api_key TEXT NOT NULL,
    secret TEXT NOT NULL,
    include_events TEXT NOT NULL,
    exclude_events TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    source TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    event_id TEXT NOT NULL,
    resource_key TEXT NOT NULL,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES webhook_messages (id),
    endpoint_id TEXT NOT NULL,
    resource_key TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    retry_base INTEGER NOT NULL,
    next_attempt_at_ms INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (status, id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at_ms);

CREATE TABLE webhook_attempts (
    delivery_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
