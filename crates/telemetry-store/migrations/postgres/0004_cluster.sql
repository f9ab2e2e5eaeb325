-- Cluster mode: the instances that share this database and the leases of the JetStream stream's
-- partitions. Times are the database server's (now()), so instances' clocks do not matter. A
-- lease row exists for every partition once any instance ran with the cluster on; a partition is
-- free when its lease has expired (`expires_at <= now()`). Every take bumps `epoch`.
CREATE TABLE cluster_instances (
    id TEXT COLLATE "C" PRIMARY KEY,
    last_seen TIMESTAMPTZ NOT NULL
);

CREATE TABLE cluster_leases (
    partition INTEGER PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
