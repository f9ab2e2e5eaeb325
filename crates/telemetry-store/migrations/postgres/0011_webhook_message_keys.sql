-- Webhook messages are stored once per key, no longer per id (`WebhookMessage::key`), as events
-- are since migration 10: a message whose id was drawn at random is keyed by its maker's token
-- and output sequence, so that each key is appended beside the previous one in the index (and in
-- the deliveries' index of their messages) instead of written on a random page of it, and
-- messages keep their ids as keys where the id names the webhook (derived). Deliveries refer to
-- their message by key and keep its id for the API. The stored messages are keyed by their ids.
ALTER TABLE webhook_messages ADD COLUMN key TEXT COLLATE "C";
UPDATE webhook_messages SET key = id;
ALTER TABLE webhook_messages ALTER COLUMN key SET NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN message_key TEXT COLLATE "C";
UPDATE webhook_deliveries SET message_key = message_id;
ALTER TABLE webhook_deliveries ALTER COLUMN message_key SET NOT NULL;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_message_id_fkey;
ALTER TABLE webhook_messages DROP CONSTRAINT webhook_messages_pkey;
ALTER TABLE webhook_messages ADD CONSTRAINT webhook_messages_pkey PRIMARY KEY (key);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_message_key_fkey
    FOREIGN KEY (message_key) REFERENCES webhook_messages (key);
DROP INDEX webhook_deliveries_by_message;
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_key);
