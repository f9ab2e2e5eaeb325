//! Cluster mode's instances and partition leases on PostgreSQL ([`crate::ClusterStore`]).
//!
//! A heartbeat is one transaction. It takes partitions with `FOR UPDATE SKIP LOCKED` over the
//! expired rows, and re-checks `expires_at <= now()` in the `UPDATE` itself (re-evaluated on the
//! latest row version under READ COMMITTED). So two instances taking at once never take the same
//! partition, and a lease renewed meanwhile is never taken. A renewal only extends an unexpired
//! lease of the same owner. A lease that expired is lost to its holder even if nobody took it:
//! taking it again bumps the epoch, so the former holder's writes stay fenced: a fenced write
//! (`writer.rs`) checks its lease in its own transaction and holds it `FOR SHARE` until it
//! commits, so a take waits for it, and a write after the take writes nothing. The partition
//! offsets written by fenced writes say how far each partition's stream is stored.

use std::time::Duration;

use async_trait::async_trait;

use super::{Failure, PostgresStore};
use crate::model::{Heartbeat, InstanceRecord, Lease, fair_share};
use crate::{ClusterStore, StoreError};

/// Instances not seen for this many leases are removed from `cluster_instances`.
const FORGET_AFTER_LEASES: f64 = 60.0;

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn cluster_heartbeat(
        &self,
        instance: &str,
        partitions: u32,
        lease: Duration,
    ) -> Result<Heartbeat, StoreError> {
        async {
            let seconds = lease.as_secs_f64();
            let count = i32::try_from(partitions).unwrap_or(i32::MAX);
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            transaction
                .execute(
                    "INSERT INTO cluster_instances (id, last_seen) VALUES ($1, now()) \
                     ON CONFLICT (id) DO UPDATE SET last_seen = now()",
                    &[&instance],
                )
                .await?;
            transaction
                .execute(
                    "DELETE FROM cluster_instances \
                     WHERE last_seen < now() - make_interval(secs => $1)",
                    &[&(seconds * FORGET_AFTER_LEASES)],
                )
                .await?;
            let live: Vec<String> = transaction
                .query(
                    "SELECT id FROM cluster_instances \
                     WHERE last_seen > now() - make_interval(secs => $1) ORDER BY id",
                    &[&seconds],
                )
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            let rank = live.iter().position(|id| id == instance).unwrap_or(live.len());
            let share = fair_share(partitions, live.len() as u32, rank as u32);
            transaction
                .execute(
                    "INSERT INTO cluster_leases (partition, owner, epoch, expires_at) \
                     SELECT g, '', 0, '-infinity' FROM generate_series(0, $1 - 1) AS g \
                     ON CONFLICT (partition) DO NOTHING",
                    &[&count],
                )
                .await?;
            let mut held = leases(
                transaction
                    .query(
                        "UPDATE cluster_leases SET expires_at = now() + make_interval(secs => $2) \
                         WHERE owner = $1 AND expires_at > now() AND partition < $3 \
                         RETURNING partition, epoch",
                        &[&instance, &seconds, &count],
                    )
                    .await?,
            )?;
            let missing = i64::from(share).saturating_sub(held.len() as i64);
            let mut taken = Vec::new();
            if missing > 0 {
                taken = leases(
                    transaction
                        .query(
                            "UPDATE cluster_leases \
                             SET owner = $1, epoch = epoch + 1, \
                                 expires_at = now() + make_interval(secs => $2) \
                             WHERE expires_at <= now() AND partition IN ( \
                                 SELECT partition FROM cluster_leases \
                                 WHERE expires_at <= now() AND partition < $3 \
                                 ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED) \
                             RETURNING partition, epoch",
                            &[&instance, &seconds, &count, &missing],
                        )
                        .await?,
                )?;
                held.extend(taken.iter().copied());
            }
            transaction.commit().await?;
            held.sort_unstable();
            taken.sort_unstable();
            Ok(Heartbeat { live, share, held, taken })
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn release_lease(&self, instance: &str, lease: Lease) -> Result<(), StoreError> {
        async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE cluster_leases SET expires_at = '-infinity' \
                     WHERE partition = $1 AND owner = $2 AND epoch = $3",
                    &[&(lease.partition as i32), &instance, &lease.epoch],
                )
                .await?;
            Ok(())
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn partition_offset(&self, partition: u32) -> Result<Option<(i64, u64)>, StoreError> {
        async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT epoch, seq FROM partition_offsets WHERE partition = $1",
                    &[&(partition as i32)],
                )
                .await?;
            row.map(|row| -> Result<(i64, u64), Failure> {
                let seq: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, u64::try_from(seq).unwrap_or(0)))
            })
            .transpose()
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn leave_cluster(&self, instance: &str) -> Result<(), StoreError> {
        async {
            let client = self.client().await?;
            client.execute("DELETE FROM cluster_instances WHERE id = $1", &[&instance]).await?;
            Ok(())
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn cluster_instances(&self, recent: Duration) -> Result<Vec<InstanceRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT i.id, (extract(epoch FROM i.last_seen) * 1000)::BIGINT, \
                            COALESCE(array_agg(l.partition ORDER BY l.partition) \
                                     FILTER (WHERE l.partition IS NOT NULL), '{}') \
                     FROM cluster_instances i \
                     LEFT JOIN cluster_leases l ON l.owner = i.id AND l.expires_at > now() \
                     WHERE i.last_seen > now() - make_interval(secs => $1) \
                     GROUP BY i.id, i.last_seen ORDER BY i.id",
                    &[&recent.as_secs_f64()],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let partitions: Vec<i32> = row.try_get(2)?;
                    Ok(InstanceRecord {
                        id: row.try_get(0)?,
                        last_seen: telemetry_core::UnixMillis(row.try_get(1)?),
                        partitions: partitions.into_iter().map(|p| p as u32).collect(),
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()
        }
        .await
        .map_err(Failure::into_store)
    }
}

fn leases(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Lease>, Failure> {
    rows.iter()
        .map(|row| {
            let partition: i32 = row.try_get(0)?;
            Ok(Lease { partition: partition as u32, epoch: row.try_get(1)? })
        })
        .collect()
}
