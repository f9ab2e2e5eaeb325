//! The webhook outbox on PostgreSQL: claims, fenced attempt records, requeues, and the listings
//! of the API.
//!
//! # Why claims are race-free
//!
//! Transactions run at PostgreSQL's default isolation, READ COMMITTED: each statement sees the
//! rows committed when it started. A claim is one statement per endpoint: a `SELECT ... FOR
//! UPDATE SKIP LOCKED` of the due, unclaimed (or expired) queue heads, feeding an `UPDATE` that
//! sets the owner, the lease's expiry and `claim_epoch + 1`. What keeps a key's requests one at
//! a time and in id order, whatever the number of claimants:
//!
//! 1. **Two claimants never both get a head.** A claimant locks each row it hands out and
//!    holds the lock until it commits. The other claimant either finds the row locked and skips
//!    it (`SKIP LOCKED`: claims never wait), or finds it unlocked because the first committed;
//!    then, the row having changed since its statement began, PostgreSQL re-reads its latest
//!    version and checks the conditions on it again (as it does for any row locked under READ
//!    COMMITTED): it is claimed now, with a lease that has not run out, so it is not handed out.
//! 2. **A claimant never gets a non-head while the head is pending.** A row is a head when no
//!    pending delivery of its endpoint and key has a lower id (`DISTINCT ON` the key over the
//!    queue index: one index scan per endpoint, not a probe per pending row), judged on the
//!    statement's snapshot. A delivery only stops being pending by an attempt record (or its endpoint's
//!    deletion) committed before that snapshot, so a snapshot that shows the lower delivery
//!    finished is right. And a lower delivery cannot be missing from the snapshot while a higher
//!    one is in it: deliveries are inserted only by transactions holding
//!    `ORDERED_INSERTS_LOCK` until they commit, so ids are taken in commit order across every
//!    instance, and a snapshot that sees an id sees every lower one.
//! 3. **A requeued delivery waits for its key's claim.** A requeue (retry, replay) makes a
//!    finished delivery pending again, and it may have a lower id than a delivery of its key
//!    that is claimed now. A head is therefore also refused while another delivery of its key
//!    holds a live claim. Claims hold `REQUEUE_LOCK` shared and requeues hold it exclusively, so
//!    a claim's snapshot never misses a requeue that committed beside it: either the requeue
//!    committed before the claim began (and the claim sees both the requeued delivery and the
//!    live claim), or it waits for the claim to commit (and later claims see the claim).
//! 4. **Stale owners are fenced.** An attempt is recorded by an `UPDATE ... WHERE status =
//!    'pending' AND claimed_by = owner AND claim_epoch = epoch`; the attempt row is inserted
//!    only if that updated the delivery. If a newer claim committed meanwhile, the update finds
//!    the epoch moved (re-checked on the latest version, as above) and writes nothing.
//!
//! No advisory lock per key is needed: row locks and the ordered inserts are enough.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use telemetry_core::{UnixMillis, WebhookSubject};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{
    ENDPOINTS_LOCK, Failure, OUTBOX_CHANNEL, Parameters, PostgresStore, REQUEUE_LOCK, enum_column,
    status_code_column, u32_column,
};
use crate::model::{
    AttemptRecord, AttemptRow, ClaimRequest, ClaimToken, Claimed, ClaimedDelivery, DeliveriesQuery,
    DeliveryRecord, DeliveryStatus, OutboxCounts, Page, PendingDelivery, ReplayQuery,
    count_from_stored,
};
use crate::{Outbox, StoreError};

/// A pending delivery with its message (`d`: the delivery, `m`: its message).
const PENDING_COLUMNS: &str = "d.id, d.message_id, d.endpoint_id, d.resource_key, d.event, m.payload, \
     d.attempts, d.retry_base, COALESCE(d.next_attempt_at_ms, d.created_at_ms), d.created_at_ms, m.room_sid, \
     m.room_name, m.participant_sid, m.participant_identity, m.track_sid, m.egress_id, m.ingress_id";

fn pending_from_row(row: &Row) -> Result<PendingDelivery, Failure> {
    Ok(PendingDelivery {
        id: row.try_get(0)?,
        message_id: row.try_get(1)?,
        endpoint_id: row.try_get(2)?,
        resource_key: row.try_get(3)?,
        event: row.try_get(4)?,
        payload: row.try_get(5)?,
        attempts: u32_column(row, 6)?,
        retry_base: u32_column(row, 7)?,
        next_attempt_at: UnixMillis(row.try_get(8)?),
        created_at: UnixMillis(row.try_get(9)?),
        subject: WebhookSubject {
            room_sid: row.try_get(10)?,
            room_name: row.try_get(11)?,
            participant_sid: row.try_get(12)?,
            participant_identity: row.try_get(13)?,
            track_sid: row.try_get(14)?,
            egress_id: row.try_get(15)?,
            ingress_id: row.try_get(16)?,
        },
    })
}

const DELIVERY_COLUMNS: &str = "id, message_id, event, endpoint_id, resource_key, status, attempts, \
     last_status_code, last_error, created_at_ms, next_attempt_at_ms, delivered_at_ms";

fn delivery_from_row(row: &Row) -> Result<DeliveryRecord, Failure> {
    let status = enum_column(row, 5, DeliveryStatus::parse)?;
    let pending = status == DeliveryStatus::Pending;
    Ok(DeliveryRecord {
        id: row.try_get(0)?,
        message_id: row.try_get(1)?,
        event: row.try_get(2)?,
        endpoint_id: row.try_get(3)?,
        resource_key: row.try_get(4)?,
        status,
        attempts: u32_column(row, 6)?,
        last_status_code: status_code_column(row, 7)?,
        last_error: row.try_get(8)?,
        created_at: UnixMillis(row.try_get(9)?),
        next_attempt_at: if pending {
            row.try_get::<_, Option<i64>>(10)?.map(UnixMillis)
        } else {
            None
        },
        delivered_at: row.try_get::<_, Option<i64>>(11)?.map(UnixMillis),
    })
}

/// Claims an endpoint's due queue heads (`$1` endpoint, `$2` now, `$3` how many, `$4` owner,
/// `$5` expiry); see the module's docs for why it is race-free.
const CLAIM_HEADS: &str = "WITH heads AS ( \
         SELECT DISTINCT ON (q.resource_key) q.id FROM webhook_deliveries q \
         WHERE q.endpoint_id = $1 AND q.status = 'pending' ORDER BY q.resource_key, q.id), \
     free AS ( \
         SELECT d.id FROM webhook_deliveries d JOIN heads h ON h.id = d.id \
         WHERE d.status = 'pending' AND d.next_attempt_at_ms <= $2 \
         AND (d.claimed_by IS NULL OR d.claim_expires_at_ms <= $2) \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.endpoint_id = d.endpoint_id \
             AND c.resource_key = d.resource_key AND c.status = 'pending' AND c.id <> d.id \
             AND c.claimed_by IS NOT NULL AND c.claim_expires_at_ms > $2) \
         ORDER BY d.id LIMIT $3 \
         FOR UPDATE OF d SKIP LOCKED) \
     UPDATE webhook_deliveries d SET claimed_by = $4, claim_expires_at_ms = $5, claim_epoch = d.claim_epoch + 1 \
     FROM free, webhook_messages m WHERE d.id = free.id AND m.key = d.message_key \
     RETURNING ";

/// Records one attempt under its claim (`$1` delivery, `$2` status, `$3` attempt number, `$4` next
/// attempt, `$5` HTTP status, `$6` error, `$7` delivered at, `$8` finished at, `$9` owner,
/// `$10` epoch, `$11` started at, `$12` duration): the delivery moves on and the claim is released
/// only if the claim is still current, and the attempt row is written only then. Returns 1 if it
/// was recorded, else 0.
const RECORD_ATTEMPT: &str = "WITH updated AS ( \
         UPDATE webhook_deliveries SET status = $2, attempts = GREATEST(attempts, $3::bigint), \
         next_attempt_at_ms = $4, last_status_code = $5, last_error = $6, \
         delivered_at_ms = COALESCE($7, delivered_at_ms), updated_at_ms = $8, \
         claimed_by = NULL, claim_expires_at_ms = NULL \
         WHERE id = $1 AND status = 'pending' AND claimed_by = $9 AND claim_epoch = $10 \
         RETURNING id), \
     inserted AS ( \
         INSERT INTO webhook_attempts (delivery_id, attempt, started_at_ms, duration_ms, status_code, error) \
         SELECT id, $3::bigint, $11, $12, $5, $6 FROM updated ON CONFLICT DO NOTHING) \
     SELECT COUNT(*) FROM updated";

/// Makes delivery `$1` pending again, due at `$2`, its schedule restarting, unless it is pending
/// already (see [`DeliveryStatus::can_requeue`]) or its endpoint is gone; returns it.
const REQUEUE_DELIVERY: &str = "UPDATE webhook_deliveries SET status = 'pending', retry_base = attempts, \
     next_attempt_at_ms = $2, updated_at_ms = $2, claimed_by = NULL, claim_expires_at_ms = NULL \
     WHERE id = $1 AND status <> 'pending' AND endpoint_id IN (SELECT id FROM webhook_endpoints) \
     RETURNING *";

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError> {
        if request.slots.iter().all(|(_, slots)| *slots == 0) {
            return Ok(Claimed::default());
        }
        async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            // A claim lost in a crash of the server is harmless (the delivery is claimed again:
            // at least once), so claims need not wait for the WAL to reach the disk.
            transaction.batch_execute("SET LOCAL synchronous_commit = off").await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock_shared($1)", &[&REQUEUE_LOCK])
                .await?;
            let claim_sql = format!("{CLAIM_HEADS}{PENDING_COLUMNS}, d.claim_epoch");
            let (claim, next_due) = tokio::try_join!(
                transaction.prepare_cached(&claim_sql),
                transaction.prepare_cached(
                    "SELECT MIN(next_attempt_at_ms) FROM webhook_deliveries \
                     WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at_ms > $2",
                ),
            )?;
            let expires_at = request.expires_at();
            let endpoints: Vec<(&String, i64)> = request
                .slots
                .iter()
                .filter(|(_, slots)| *slots > 0)
                .map(|(endpoint, slots)| (endpoint, i64::from(*slots)))
                .collect();
            // Every endpoint's statements pipelined in one transaction.
            let (now, owner, expires) = (&request.now.0, &request.owner, &expires_at.0);
            let per_endpoint = try_join_all(endpoints.iter().map(|(endpoint, slots)| {
                let (claim, next_due, transaction) = (&claim, &next_due, &transaction);
                async move {
                    let claim_parameters: [&(dyn ToSql + Sync); 5] =
                        [endpoint, now, slots, owner, expires];
                    let due_parameters: [&(dyn ToSql + Sync); 2] = [endpoint, now];
                    let (heads, next) = tokio::try_join!(
                        transaction.query(claim, &claim_parameters),
                        transaction.query_one(next_due, &due_parameters),
                    )?;
                    Ok::<_, Failure>((heads, next.try_get::<_, Option<i64>>(0)?))
                }
            }))
            .await?;
            let to_claimed = |row: &Row| -> Result<ClaimedDelivery, Failure> {
                Ok(ClaimedDelivery {
                    delivery: pending_from_row(row)?,
                    claim: ClaimToken { owner: request.owner.clone(), epoch: row.try_get(17)? },
                    expires_at,
                })
            };
            let mut heads: Vec<ClaimedDelivery> = Vec::new();
            let mut next_due: Option<UnixMillis> = None;
            for (rows, next) in &per_endpoint {
                for row in rows {
                    heads.push(to_claimed(row)?);
                }
                if let Some(due) = next.map(UnixMillis) {
                    next_due = Some(next_due.map_or(due, |next| next.min(due)));
                }
            }
            heads.sort_by_key(|claimed| claimed.delivery.id);
            // Each head's run: the pending deliveries after it in its queue, while due and
            // free. No row lock is needed: none of them is a head while their head is pending.
            let mut runs: std::collections::HashMap<i64, Vec<ClaimedDelivery>> =
                std::collections::HashMap::new();
            if request.run > 1 && !heads.is_empty() {
                let endpoints: Vec<&str> =
                    heads.iter().map(|h| h.delivery.endpoint_id.as_str()).collect();
                let keys: Vec<&str> =
                    heads.iter().map(|h| h.delivery.resource_key.as_str()).collect();
                let ids: Vec<i64> = heads.iter().map(|h| h.delivery.id).collect();
                let limit = i64::from(request.run - 1);
                let candidates = transaction
                    .query(
                        "SELECT h.head_id, f.id, f.free FROM \
                         unnest($1::text[], $2::text[], $3::bigint[]) AS h(endpoint_id, resource_key, head_id) \
                         CROSS JOIN LATERAL (SELECT g.id, g.next_attempt_at_ms <= $4 \
                             AND (g.claimed_by IS NULL OR g.claim_expires_at_ms <= $4) AS free \
                             FROM webhook_deliveries g WHERE g.endpoint_id = h.endpoint_id \
                             AND g.resource_key = h.resource_key AND g.status = 'pending' AND g.id > h.head_id \
                             ORDER BY g.id LIMIT $5) f ORDER BY h.head_id, f.id",
                        &[&endpoints, &keys, &ids, now, &limit],
                    )
                    .await?;
                let mut followers: Vec<i64> = Vec::new();
                let mut blocked: Option<i64> = None;
                let mut follower_head: std::collections::HashMap<i64, i64> =
                    std::collections::HashMap::new();
                for row in &candidates {
                    let (head, id, free): (i64, i64, bool) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    if blocked == Some(head) {
                        continue;
                    }
                    if free {
                        followers.push(id);
                        follower_head.insert(id, head);
                    } else {
                        blocked = Some(head);
                    }
                }
                if !followers.is_empty() {
                    // Each message fetched by its key (`OFFSET 0` keeps the planner from turning
                    // the lookups into a join over every message).
                    let statement = format!(
                        "WITH d AS (UPDATE webhook_deliveries SET claimed_by = $2, claim_expires_at_ms = $3, \
                         claim_epoch = claim_epoch + 1 WHERE id = ANY($1) RETURNING *) \
                         SELECT {PENDING_COLUMNS}, d.claim_epoch FROM d CROSS JOIN LATERAL \
                         (SELECT * FROM webhook_messages WHERE key = d.message_key OFFSET 0) m"
                    );
                    let rows = transaction.query(&statement, &[&followers, owner, expires]).await?;
                    for row in &rows {
                        let claimed = to_claimed(row)?;
                        let head = follower_head[&claimed.delivery.id];
                        runs.entry(head).or_default().push(claimed);
                    }
                }
            }
            transaction.commit().await?;
            let mut claimed = Claimed { deliveries: Vec::new(), next_due };
            for head in heads {
                let id = head.delivery.id;
                claimed.deliveries.push(head);
                if let Some(mut run) = runs.remove(&id) {
                    run.sort_by_key(|claimed| claimed.delivery.id);
                    claimed.deliveries.extend(run);
                }
            }
            Ok(claimed)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<Vec<bool>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        async {
            // Applied in delivery id order (so that two transactions lock rows in the same
            // order and cannot deadlock); a delivery recorded twice keeps its order, the first
            // record winning as the second finds the claim released.
            let mut order: Vec<usize> = (0..attempts.len()).collect();
            order.sort_by_key(|&index| attempts[index].delivery_id);
            let rows: Vec<AttemptParameters> =
                order.iter().map(|&index| AttemptParameters::of(&attempts[index])).collect();
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            // A record lost in a crash of the server makes its delivery again (at least once,
            // as after any crash); the WAL is written in order, and the next commit that waits
            // for it (an acknowledged call's, say) makes every record before it durable too.
            // So records need not wait for the WAL to reach the disk either.
            transaction.batch_execute("SET LOCAL synchronous_commit = off").await?;
            let statement = transaction.prepare_cached(RECORD_ATTEMPT).await?;
            let results = try_join_all(rows.iter().map(|row| {
                let (transaction, statement) = (&transaction, &statement);
                async move {
                    let recorded: i64 =
                        transaction.query_one(statement, &row.as_refs()).await?.try_get(0)?;
                    Ok::<_, Failure>(recorded > 0)
                }
            }))
            .await?;
            transaction.commit().await?;
            let mut recorded = vec![false; attempts.len()];
            for (index, result) in order.into_iter().zip(results) {
                recorded[index] = result;
            }
            Ok(recorded)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn release(&self, claims: Vec<(i64, ClaimToken)>) -> Result<u64, StoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = claims.iter().map(|(id, _)| *id).collect();
        let owners: Vec<&str> = claims.iter().map(|(_, claim)| claim.owner.as_str()).collect();
        let epochs: Vec<i64> = claims.iter().map(|(_, claim)| claim.epoch).collect();
        self.release_where(
            "UPDATE webhook_deliveries d SET claimed_by = NULL, claim_expires_at_ms = NULL \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS c(id, owner, epoch) \
             WHERE d.id = c.id AND d.status = 'pending' AND d.claimed_by = c.owner \
             AND d.claim_epoch = c.epoch",
            &[&ids, &owners, &epochs],
        )
        .await
    }

    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError> {
        self.release_where(
            "UPDATE webhook_deliveries SET claimed_by = NULL, claim_expires_at_ms = NULL \
             WHERE claimed_by = $1 AND status = 'pending'",
            &[&owner],
        )
        .await
    }

    fn outbox_changed(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_changed.clone()
    }

    async fn deliveries(
        &self,
        query: DeliveriesQuery,
    ) -> Result<Page<DeliveryRecord, i64>, StoreError> {
        async {
            let mut parameters = Parameters::default();
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE TRUE");
            let status = query.status.map(|status| status.as_str().to_owned());
            for (column, value) in
                [("endpoint_id", &query.endpoint_id), ("status", &status), ("event", &query.event)]
            {
                if let Some(value) = value {
                    let value = parameters.push(value.clone());
                    sql.push_str(&format!(" AND {column} = {value}"));
                }
            }
            if let Some(before) = query.before {
                let before = parameters.push(before);
                sql.push_str(&format!(" AND id < {before}"));
            }
            let limit = parameters.push(i64::from(query.limit.saturating_add(1)));
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &parameters.as_refs()).await?;
            let items = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| last.id))
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn delivery(
        &self,
        id: i64,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRow>)>, StoreError> {
        async {
            let client = self.client().await?;
            let (delivery, attempts) = tokio::try_join!(
                async {
                    let statement = client
                        .prepare_cached(&format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
                        ))
                        .await?;
                    Ok::<_, Failure>(client.query_opt(&statement, &[&id]).await?)
                },
                async {
                    let statement = client
                        .prepare_cached(
                            "SELECT attempt, started_at_ms, duration_ms, status_code, error \
                             FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
                        )
                        .await?;
                    Ok::<_, Failure>(client.query(&statement, &[&id]).await?)
                },
            )?;
            let Some(delivery) = delivery else { return Ok(None) };
            let attempts = attempts
                .iter()
                .map(|row| {
                    Ok(AttemptRow {
                        attempt: u32_column(row, 0)?,
                        started_at: UnixMillis(row.try_get(1)?),
                        duration_ms: row.try_get(2)?,
                        status_code: status_code_column(row, 3)?,
                        error: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            Ok(Some((delivery_from_row(&delivery)?, attempts)))
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn requeue(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError> {
        let requeued = self
            .change_pending(&format!("WITH changed AS ({REQUEUE_DELIVERY})"), &[&id, &now.0], true)
            .await?;
        Ok(requeued.into_iter().next())
    }

    async fn expedite(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError> {
        let expedited = self
            .change_pending(
                "WITH changed AS (UPDATE webhook_deliveries SET next_attempt_at_ms = $2, updated_at_ms = $2 \
                 WHERE id = $1 AND status = 'pending' RETURNING *)",
                &[&id, &now.0],
                false,
            )
            .await?;
        Ok(expedited.into_iter().next())
    }

    async fn replay(
        &self,
        query: ReplayQuery,
        now: UnixMillis,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.change_pending(
            "WITH changed AS (UPDATE webhook_deliveries SET status = 'pending', retry_base = attempts, \
             next_attempt_at_ms = $5, updated_at_ms = $5, claimed_by = NULL, claim_expires_at_ms = NULL \
             WHERE endpoint_id = $1 AND status = $2 AND status <> 'pending' AND created_at_ms >= $3 \
             AND created_at_ms < $4 AND endpoint_id IN (SELECT id FROM webhook_endpoints) RETURNING *)",
            &[&query.endpoint_id, &query.status.as_str(), &query.since.0, &query.until.0, &now.0],
            true,
        )
        .await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.count_deliveries(
            "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status",
            &[],
        )
        .await
    }

    async fn room_outbox_counts(&self, room_sid: &str) -> Result<OutboxCounts, StoreError> {
        self.count_deliveries(
            "SELECT d.status, COUNT(*) FROM webhook_messages m \
             JOIN webhook_deliveries d ON d.message_key = m.key \
             WHERE m.room_sid = $1 GROUP BY d.status",
            &[&room_sid],
        )
        .await
    }
}

impl PostgresStore {
    /// Deliveries counted by status by `query`, whose rows are (status, count).
    async fn count_deliveries(
        &self,
        query: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<OutboxCounts, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client.prepare_cached(query).await?;
            let mut counts = OutboxCounts::default();
            for row in client.query(&statement, parameters).await? {
                let count = count_from_stored(row.try_get(1)?);
                match enum_column(&row, 0, DeliveryStatus::parse)? {
                    DeliveryStatus::Pending => counts.pending = count,
                    DeliveryStatus::Delivered => counts.delivered = count,
                    DeliveryStatus::Dead => counts.dead = count,
                }
            }
            Ok(counts)
        }
        .await
        .map_err(Failure::into_store)
    }

    /// Runs `release` (an `UPDATE` that clears claims) in a transaction and, if it released
    /// any, notifies every instance and wakes the local dispatcher; returns how many.
    async fn release_where(
        &self,
        release: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let released = async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let released = transaction.execute(release, parameters).await?;
            if released > 0 {
                notify(&transaction).await?;
            }
            transaction.commit().await?;
            Ok(released)
        }
        .await
        .map_err(Failure::into_store)?;
        if released > 0 {
            self.wake_dispatchers();
        }
        Ok(released)
    }

    /// Runs `changed` (a `WITH changed AS (UPDATE webhook_deliveries ... RETURNING *)` clause)
    /// and returns the deliveries it changed, as pending, in id order; notifies every instance
    /// if there are any. `needs_endpoint`: the update requires the endpoint to exist, so it runs
    /// under a shared [`ENDPOINTS_LOCK`] (an endpoint being deleted meanwhile is either gone
    /// already or deleted after, its deliveries then made dead again).
    async fn change_pending(
        &self,
        changed: &str,
        parameters: &[&(dyn ToSql + Sync)],
        needs_endpoint: bool,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let changed = async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            if needs_endpoint {
                transaction
                    .execute("SELECT pg_advisory_xact_lock_shared($1)", &[&ENDPOINTS_LOCK])
                    .await?;
            }
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&REQUEUE_LOCK]).await?;
            let statement = transaction
                .prepare_cached(&format!(
                    "{changed} SELECT {PENDING_COLUMNS} FROM changed d \
                     JOIN webhook_messages m ON m.key = d.message_key ORDER BY d.id"
                ))
                .await?;
            let rows = transaction.query(&statement, parameters).await?;
            let changed = rows.iter().map(pending_from_row).collect::<Result<Vec<_>, _>>()?;
            if !changed.is_empty() {
                notify(&transaction).await?;
            }
            transaction.commit().await?;
            Ok(changed)
        }
        .await
        .map_err(Failure::into_store)?;
        if !changed.is_empty() {
            self.wake_dispatchers();
        }
        Ok(changed)
    }
}

/// Notifies every instance's listener when the transaction commits.
async fn notify(transaction: &deadpool_postgres::Transaction<'_>) -> Result<(), Failure> {
    transaction.execute("SELECT pg_notify($1, '')", &[&OUTBOX_CHANNEL]).await?;
    Ok(())
}

/// One attempt's parameters for [`RECORD_ATTEMPT`].
struct AttemptParameters {
    delivery_id: i64,
    status: &'static str,
    attempt: i64,
    next_attempt_at: Option<i64>,
    status_code: Option<i32>,
    error: Option<String>,
    delivered_at: Option<i64>,
    finished_at: i64,
    owner: String,
    epoch: i64,
    started_at: i64,
    duration_ms: i64,
}

impl AttemptParameters {
    fn of(attempt: &AttemptRecord) -> Self {
        let transition = attempt.transition();
        Self {
            delivery_id: attempt.delivery_id,
            status: transition.status.as_str(),
            attempt: i64::from(attempt.attempt),
            next_attempt_at: transition.next_attempt_at.map(|at| at.0),
            status_code: attempt.status_code.map(i32::from),
            error: attempt.error.clone(),
            delivered_at: transition.delivered_at.map(|at| at.0),
            finished_at: attempt.finished_at().0,
            owner: attempt.claim.owner.clone(),
            epoch: attempt.claim.epoch,
            started_at: attempt.started_at.0,
            duration_ms: attempt.duration_ms,
        }
    }

    fn as_refs(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.delivery_id,
            &self.status,
            &self.attempt,
            &self.next_attempt_at,
            &self.status_code,
            &self.error,
            &self.delivered_at,
            &self.finished_at,
            &self.owner,
            &self.epoch,
            &self.started_at,
            &self.duration_ms,
        ]
    }
}
