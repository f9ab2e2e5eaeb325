-- A room's webhook messages, for the webhook counts of its report (`Outbox::room_outbox_counts`).

CREATE INDEX webhook_messages_by_room ON webhook_messages (room_sid);
