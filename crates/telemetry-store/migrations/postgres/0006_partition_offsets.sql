-- Cluster mode: how far each partition's stream is stored. `seq` is the highest JetStream stream
-- sequence whose calls' outputs (stats samples in windows included) are all stored; it is written
-- in the same transaction as those outputs, only by the holder of the partition's lease at
-- `epoch` (the transaction checks the lease and holds it `FOR SHARE` until it commits). A new
-- owner restores the partition's rooms from the store and replays the stream after `seq`.
CREATE TABLE partition_offsets (
    partition INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
