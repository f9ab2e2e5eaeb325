-- Webhook messages are stored once per key, no longer per id (`WebhookMessage::key`), as events
-- are since migration 10: a message whose id was drawn at random is keyed by its maker's token
-- and output sequence, so that each key is appended beside the previous one in the index instead
-- of written on a random page of it, and messages keep their ids as keys where the id names the
-- webhook (derived). Deliveries refer to their message by key. SQLite can neither drop a UNIQUE
-- constraint nor change a foreign key: both tables are rebuilt, delivery ids (the API's) and
-- their sequence kept, and the stored messages keyed by their ids. The old tables are renamed
-- first, so that the new ones get the names the foreign key and the code use.
ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_by_id;
ALTER TABLE webhook_messages RENAME TO webhook_messages_by_id;

CREATE TABLE webhook_messages (
    key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    event_id TEXT NOT NULL,
    resource_key TEXT NOT NULL,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    participant_sid TEXT NOT NULL DEFAULT '',
    participant_identity TEXT NOT NULL DEFAULT '',
    track_sid TEXT NOT NULL DEFAULT '',
    egress_id TEXT NOT NULL DEFAULT '',
    ingress_id TEXT NOT NULL DEFAULT ''
);
INSERT INTO webhook_messages (rowid, key, id, event, event_id, resource_key, room_sid, room_name,
    payload, created_at_ms, participant_sid, participant_identity, track_sid, egress_id, ingress_id)
SELECT rowid, id, id, event, event_id, resource_key, room_sid, room_name, payload, created_at_ms,
    participant_sid, participant_identity, track_sid, egress_id, ingress_id
FROM webhook_messages_by_id ORDER BY rowid;

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_key TEXT NOT NULL REFERENCES webhook_messages (key),
    message_id TEXT NOT NULL,
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
    updated_at_ms INTEGER NOT NULL,
    claimed_by TEXT,
    claim_expires_at_ms INTEGER,
    claim_epoch INTEGER NOT NULL DEFAULT 0
);
INSERT INTO webhook_deliveries (id, message_key, message_id, endpoint_id, resource_key, event,
    status, attempts, retry_base, next_attempt_at_ms, last_status_code, last_error, created_at_ms,
    delivered_at_ms, updated_at_ms, claimed_by, claim_expires_at_ms, claim_epoch)
SELECT id, message_id, message_id, endpoint_id, resource_key, event, status, attempts, retry_base,
    next_attempt_at_ms, last_status_code, last_error, created_at_ms, delivered_at_ms,
    updated_at_ms, claimed_by, claim_expires_at_ms, claim_epoch
FROM webhook_deliveries_by_id ORDER BY id;
-- Delivery ids never go back, even past deliveries pruned before the rebuild (the rename moved
-- the old table's row to its new name).
DELETE FROM sqlite_sequence WHERE name = 'webhook_deliveries';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'webhook_deliveries', MAX(
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'webhook_deliveries_by_id'), 0),
    COALESCE((SELECT MAX(id) FROM webhook_deliveries), 0));
DELETE FROM sqlite_sequence WHERE name = 'webhook_deliveries_by_id';

-- The children first: the old messages are then referred to by nothing.
DROP TABLE webhook_deliveries_by_id;
DROP TABLE webhook_messages_by_id;

CREATE INDEX webhook_messages_by_room ON webhook_messages (room_sid);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at_ms);
-- The head of a queue (endpoint, resource key) is its lowest pending id.
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, resource_key, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at_ms)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue_claims ON webhook_deliveries (endpoint_id, resource_key)
    WHERE status = 'pending' AND claimed_by IS NOT NULL;
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (status, id);
-- Pruning a message once no delivery refers to it.
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_key);
