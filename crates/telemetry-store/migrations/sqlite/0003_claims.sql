-- Deliveries shared by several dispatchers: a claim (owner, lease expiry, epoch) per delivery;
-- what a webhook is about, stored with its message so that nobody parses the body back; and
-- which instance's configuration lists which configured endpoint.

ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claim_expires_at_ms INTEGER;
ALTER TABLE webhook_deliveries ADD COLUMN claim_epoch INTEGER NOT NULL DEFAULT 0;

-- The head of a queue (endpoint, resource key) is its lowest pending id.
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, resource_key, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at_ms)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue_claims ON webhook_deliveries (endpoint_id, resource_key)
    WHERE status = 'pending' AND claimed_by IS NOT NULL;
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (status, id);
DROP INDEX webhook_deliveries_pending;

ALTER TABLE webhook_messages ADD COLUMN participant_sid TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_messages ADD COLUMN participant_identity TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_messages ADD COLUMN track_sid TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_messages ADD COLUMN egress_id TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_messages ADD COLUMN ingress_id TEXT NOT NULL DEFAULT '';

CREATE TABLE webhook_endpoint_listings (
    instance_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX webhook_endpoint_listings_by_endpoint ON webhook_endpoint_listings (endpoint_id);
