//! The writer task: group commit of [`WriteBatch`]es, and how batches become SQL.
//!
//! Writes wait in a channel; the task takes every write waiting (up to [`MAX_GROUP`]) and commits
//! them in one transaction, then answers each. While one group commits, the next one gathers:
//! under load a commit (and its WAL flush) serves many writes. A group is first applied as one
//! batch (the same few statements whatever its size) under a savepoint; if that fails, it is
//! rolled back and each write is applied again under a savepoint of its own, so that a write
//! that fails fails alone and the others commit.
//!
//! Batches become a handful of statements whatever their size: one multi-row `INSERT ... SELECT
//! FROM unnest(...)` per table, each array a column. Statements that do not depend on each other
//! are pipelined on the connection (sent together, answered in order), so applying costs two
//! round trips. Events and webhook messages are inserted with `ON CONFLICT DO NOTHING RETURNING`
//! their key or id: an event whose key is stored already applies no projection again, and a
//! message stored already creates no delivery.

use std::collections::{BTreeMap, HashSet};

use deadpool_postgres::{Pool, Transaction};
use futures_util::future::{BoxFuture, FutureExt, try_join_all};
use telemetry_core::UnixMillis;
use telemetry_core::rates::RateCell;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::{Failure, ORDERED_INSERTS_LOCK, OUTBOX_CHANNEL, copy_error};
use crate::StoreError;
use crate::model::{
    EventRecord, IssueRecord, NodeRoomsRecord, OutgoingWebhook, ParticipantState, Projection,
    QualityRecord, RateCellRecord, StatsWindowRecord, WorkerRecord, WriteBatch, WriteMark,
    WriteReceipt, stored_count,
};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// A write waiting for the writer, and where its answer goes.
#[derive(Debug)]
pub(super) struct WriteRequest {
    /// What to write.
    pub(super) batch: WriteBatch,
    /// The answer, sent once the transaction has committed (or failed).
    pub(super) done: oneshot::Sender<Result<WriteReceipt, StoreError>>,
}

/// Commits the writes that `requests` brings, in groups, until the channel closes (the store
/// closed or dropped its sender): what was sent before is committed first. A group holds at most
/// one write of each writer ([`crate::model::WriteMark`]): a second one waits for the next group,
/// so that each write's mark is compared with what its writer's earlier writes stored.
pub(super) async fn run(pool: Pool, mut requests: mpsc::UnboundedReceiver<WriteRequest>) {
    let mut group = Vec::new();
    let mut held: Option<WriteRequest> = None;
    let mut writers = HashSet::new();
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => match requests.recv().await {
                Some(request) => request,
                None => break,
            },
        };
        writers.clear();
        writers.extend(first.batch.mark.as_ref().map(|mark| mark.writer.clone()));
        group.push(first);
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => {
                    if let Some(mark) = &request.batch.mark
                        && !writers.insert(mark.writer.clone())
                    {
                        held = Some(request);
                        break;
                    }
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let results = commit_group(&pool, &group).await;
        for (request, result) in group.drain(..).zip(results) {
            let _ = request.done.send(result);
        }
    }
}

/// Commits `group` in one transaction; returns each write's result.
pub(super) async fn commit_group(
    pool: &Pool,
    group: &[WriteRequest],
) -> Vec<Result<WriteReceipt, StoreError>> {
    match try_commit_group(pool, group).await {
        Ok(results) => results,
        Err(failure) => {
            let error = failure.into_store();
            if group.len() == 1 {
                return vec![Err(error)];
            }
            group.iter().map(|_| Err(copy_error(&error))).collect()
        }
    }
}

async fn try_commit_group(
    pool: &Pool,
    group: &[WriteRequest],
) -> Result<Vec<Result<WriteReceipt, StoreError>>, Failure> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    // The ordered-inserts lock and the outbox notification are sent ahead of the writes,
    // pipelined with them on the connection (which runs statements in the order they were
    // sent, so no id is taken before the lock is held), instead of a round trip each.
    let takes_ids = group.iter().any(|request| takes_ids(&request.batch));
    // Notified whenever the group carries deliveries to create (delivered to the listeners of
    // every instance when, and only if, this commits); if every message was a repeat and
    // created none, a dispatcher wakes for nothing.
    let notifies = group.iter().any(|request| {
        request.batch.webhooks.iter().any(|webhook| !webhook.endpoint_ids.is_empty())
    });
    // Prepared first, so that each is sent whole when first polled (see `prepared_if`).
    let lock = prepared_if(&transaction, takes_ids, "SELECT pg_advisory_xact_lock($1)").await?;
    let notify = prepared_if(&transaction, notifies, "SELECT pg_notify($1, '')").await?;
    let lock = execute_if(&transaction, lock.as_ref(), &ORDERED_INSERTS_LOCK);
    let notify = execute_if(&transaction, notify.as_ref(), &OUTBOX_CHANNEL);
    let all: Vec<&WriteBatch> = group.iter().map(|request| &request.batch).collect();
    let writes = async {
        // Cluster mode: a batch whose fence no longer holds is left out whole; the leases of
        // the others are held `FOR SHARE` until the commit, so none is taken meanwhile.
        let fenced = fenced(&transaction, &all).await?;
        let batches: Vec<&WriteBatch> = all
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(batch, _)| *batch)
            .collect();
        let results = write_unfenced(&transaction, &batches).await?;
        let mut results = results.into_iter();
        Ok::<_, Failure>(
            fenced
                .iter()
                .map(|&fenced| {
                    if fenced {
                        Ok(WriteReceipt { fenced: true, ..WriteReceipt::default() })
                    } else {
                        results.next().unwrap_or_else(|| Ok(WriteReceipt::default()))
                    }
                })
                .collect(),
        )
    };
    // Polled in this order, so sent in this order.
    let ((), (), results) = tokio::try_join!(lock, notify, writes)?;
    transaction.commit().await?;
    Ok(results)
}

/// Which of `batches` are fenced out: their fence's lease is no longer held by its instance at
/// its epoch (expired, or taken since). The leases that still hold are locked `FOR SHARE` (a
/// heartbeat's take or renewal of them waits for this transaction).
async fn fenced(
    transaction: &Transaction<'_>,
    batches: &[&WriteBatch],
) -> Result<Vec<bool>, Failure> {
    let fences: Vec<(i32, &crate::model::Fence)> = batches
        .iter()
        .enumerate()
        .filter_map(|(index, batch)| batch.fence.as_ref().map(|fence| (index as i32, fence)))
        .collect();
    if fences.is_empty() {
        return Ok(vec![false; batches.len()]);
    }
    let statement = transaction
        .prepare_cached(
            "SELECT f.i FROM unnest($1::int[], $2::int[], $3::bigint[], $4::text[]) \
                 AS f (i, partition, epoch, owner) \
             JOIN cluster_leases l ON l.partition = f.partition AND l.epoch = f.epoch \
                 AND l.owner = f.owner AND l.expires_at > now() \
             ORDER BY l.partition FOR SHARE OF l",
        )
        .await?;
    let rows = transaction
        .query(
            &statement,
            &[
                &column(&fences, |(index, _)| *index),
                &column(&fences, |(_, fence)| fence.lease.partition as i32),
                &column(&fences, |(_, fence)| fence.lease.epoch),
                &column(&fences, |(_, fence)| fence.instance.as_str()),
            ],
        )
        .await?;
    let mut fenced: Vec<bool> = batches.iter().map(|batch| batch.fence.is_some()).collect();
    for row in rows {
        let index: i32 = row.try_get(0)?;
        fenced[index as usize] = false;
    }
    Ok(fenced)
}

/// Moves the marks of `batches` to their numbers; returns whether each was committed before
/// (its writer's stored mark at or past its number), in order. A mark's row stays locked until
/// the commit: a retry of a write whose commit is still under way (its connection lost) waits
/// for it, then finds it committed, or not. Called under the savepoint the writes are applied
/// under, so that a write that fails leaves its mark where it was.
async fn repeated(
    transaction: &Transaction<'_>,
    batches: &[&WriteBatch],
) -> Result<Vec<bool>, Failure> {
    let marks: Vec<&WriteMark> = batches.iter().filter_map(|batch| batch.mark.as_ref()).collect();
    if marks.is_empty() {
        return Ok(vec![false; batches.len()]);
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO write_marks (writer, number, at_ms) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (writer) DO UPDATE SET number = excluded.number, at_ms = excluded.at_ms \
                 WHERE write_marks.number < excluded.number \
             RETURNING writer",
        )
        .await?;
    let rows = transaction
        .query(
            &statement,
            &[
                &column(&marks, |mark| mark.writer.as_str()),
                &column(&marks, |mark| stored_count(mark.number)),
                &column(&marks, |mark| mark.at.0),
            ],
        )
        .await?;
    let moved: HashSet<String> = rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?;
    Ok(batches
        .iter()
        .map(|batch| batch.mark.as_ref().is_some_and(|mark| !moved.contains(&mark.writer)))
        .collect())
}

/// Applies `batch` unless its mark says it was committed before.
async fn apply_one_unless_repeated(
    transaction: &Transaction<'_>,
    batch: &WriteBatch,
) -> Result<WriteReceipt, Failure> {
    if repeated(transaction, &[batch]).await?[0] {
        return Ok(WriteReceipt { repeated: true, ..WriteReceipt::default() });
    }
    apply_one(transaction, batch).await
}

/// Writes `batches` (none fenced) in the current transaction; returns each one's result. A
/// batch that its mark says was committed before writes nothing and is answered `repeated`.
async fn write_unfenced(
    transaction: &Transaction<'_>,
    batches: &[&WriteBatch],
) -> Result<Vec<Result<WriteReceipt, StoreError>>, Failure> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    if let [batch] = batches[..] {
        // Alone in its transaction: its failure is the transaction's (its mark's move included),
        // no savepoint needed.
        return Ok(vec![Ok(apply_one_unless_repeated(transaction, batch).await?)]);
    }
    // The whole group as one batch first: the same statements whatever the group's size.
    // If that fails, each batch again under its own savepoint, so that only the ones that
    // fail fail (and keep their marks where they were).
    transaction.batch_execute("SAVEPOINT group_write").await?;
    let grouped = async {
        let repeated = repeated(transaction, batches).await?;
        let new: Vec<&WriteBatch> = batches
            .iter()
            .zip(&repeated)
            .filter(|(_, repeated)| !**repeated)
            .map(|(batch, _)| *batch)
            .collect();
        let mut receipts =
            if new.is_empty() { Vec::new() } else { apply(transaction, &new).await? }.into_iter();
        Ok::<_, Failure>(
            repeated
                .iter()
                .map(|&repeated| {
                    if repeated {
                        WriteReceipt { repeated: true, ..WriteReceipt::default() }
                    } else {
                        receipts.next().unwrap_or_default()
                    }
                })
                .collect::<Vec<_>>(),
        )
    };
    match grouped.await {
        Ok(receipts) => {
            transaction.batch_execute("RELEASE SAVEPOINT group_write").await?;
            Ok(receipts.into_iter().map(Ok).collect())
        }
        Err(_) => {
            // If the connection broke, this fails too and takes the group down.
            transaction.batch_execute("ROLLBACK TO SAVEPOINT group_write").await?;
            let mut results = Vec::with_capacity(batches.len());
            for batch in batches {
                transaction.batch_execute("SAVEPOINT batch").await?;
                match apply_one_unless_repeated(transaction, batch).await {
                    Ok(receipt) => {
                        transaction.batch_execute("RELEASE SAVEPOINT batch").await?;
                        results.push(Ok(receipt));
                    }
                    Err(failure) => {
                        transaction
                            .batch_execute("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch")
                            .await?;
                        results.push(Err(failure.into_store()));
                    }
                }
            }
            Ok::<_, Failure>(results)
        }
    }
}

/// `sql` prepared (cached after the first time) if `wanted`: a prepared statement is sent whole
/// when its future is first polled, whereas one given as text is parsed in a round trip of its
/// own first, and the writes sent meanwhile would run before it.
async fn prepared_if(
    transaction: &Transaction<'_>,
    wanted: bool,
    sql: &str,
) -> Result<Option<Statement>, Failure> {
    Ok(if wanted { Some(transaction.prepare_cached(sql).await?) } else { None })
}

/// Executes `statement` with its one parameter, if there is a statement.
async fn execute_if(
    transaction: &Transaction<'_>,
    statement: Option<&Statement>,
    parameter: &(dyn ToSql + Sync),
) -> Result<(), Failure> {
    if let Some(statement) = statement {
        transaction.execute(statement, &[parameter]).await?;
    }
    Ok(())
}

/// Whether a batch takes ids (event positions, delivery ids), and so must hold
/// [`ORDERED_INSERTS_LOCK`].
fn takes_ids(batch: &WriteBatch) -> bool {
    !batch.events.is_empty() || !batch.webhooks.is_empty()
}

/// Writes one batch in the current transaction.
async fn apply_one(
    transaction: &Transaction<'_>,
    batch: &WriteBatch,
) -> Result<WriteReceipt, Failure> {
    let receipts = apply(transaction, &[batch]).await?;
    Ok(receipts.into_iter().next().unwrap_or_default())
}

/// Writes batches, as if one after the other, in the current transaction; returns each one's
/// receipt.
///
/// Applied together, they come out as applied in order: events and messages are inserted in
/// order, so that the first occurrence of an id wins and ids increase in order; projections
/// apply in order once every event is in (they read nothing of the events table); rate cells
/// add up and node times merge whatever the order.
async fn apply(
    transaction: &Transaction<'_>,
    batches: &[&WriteBatch],
) -> Result<Vec<WriteReceipt>, Failure> {
    let events: Vec<&EventRecord> = batches.iter().flat_map(|batch| &batch.events).collect();
    let stats: Vec<&StatsWindowRecord> = batches.iter().flat_map(|batch| &batch.stats).collect();
    let node_rooms: Vec<&NodeRoomsRecord> =
        batches.iter().flat_map(|batch| &batch.node_rooms).collect();
    let rate_cells: Vec<&RateCellRecord> =
        batches.iter().flat_map(|batch| &batch.rate_cells).collect();
    // Each webhook with the batch it belongs to, for the receipts.
    let webhooks: Vec<(usize, &OutgoingWebhook)> = batches
        .iter()
        .enumerate()
        .flat_map(|(index, batch)| batch.webhooks.iter().map(move |webhook| (index, webhook)))
        .collect();
    let (open_workers, closed_workers) =
        WorkerRecord::last_states(batches.iter().flat_map(|batch| &batch.workers));
    let issues = IssueRecord::deciding(batches.iter().flat_map(|batch| &batch.issues));
    let quality = QualityRecord::last_states(batches.iter().flat_map(|batch| &batch.quality));
    // First the rows, pipelined; events and messages say which of them are new.
    let (new_events, new_messages, (), (), (), (), (), (), ()) = tokio::try_join!(
        insert_events(transaction, &events),
        insert_messages(transaction, &webhooks),
        insert_windows(transaction, &stats),
        upsert_node_rooms(transaction, &node_rooms),
        add_rate_cells(transaction, &rate_cells),
        touch_nodes(transaction, &events, &stats, &rate_cells),
        apply_workers(transaction, &open_workers, &closed_workers),
        upsert_issues(transaction, &issues),
        store_offsets(transaction, batches),
    )?;
    // Then what the new ones imply, and the quality states of the workers now written.
    let ((), deliveries, ()) = tokio::try_join!(
        project(transaction, &events, new_events),
        insert_deliveries(transaction, &webhooks, new_messages),
        keep_quality(transaction, &quality),
    )?;
    let mut receipts = vec![WriteReceipt::default(); batches.len()];
    for index in deliveries {
        receipts[index].deliveries += 1;
    }
    Ok(receipts)
}

/// Stores the partition offsets the batches carry (the highest of each partition; a stored one
/// never goes back).
async fn store_offsets(
    transaction: &Transaction<'_>,
    batches: &[&WriteBatch],
) -> Result<(), Failure> {
    let mut offsets: BTreeMap<u32, (i64, u64)> = BTreeMap::new();
    for fence in batches.iter().filter_map(|batch| batch.fence.as_ref()) {
        if let Some(offset) = fence.offset {
            let entry = offsets.entry(fence.lease.partition).or_insert((fence.lease.epoch, offset));
            *entry = (*entry).max((fence.lease.epoch, offset));
        }
    }
    if offsets.is_empty() {
        return Ok(());
    }
    let offsets: Vec<(u32, (i64, u64))> = offsets.into_iter().collect();
    let statement = transaction
        .prepare_cached(
            "INSERT INTO partition_offsets (partition, epoch, seq) \
             SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (partition) DO UPDATE SET epoch = excluded.epoch, \
                 seq = GREATEST(partition_offsets.seq, excluded.seq)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &column(&offsets, |(partition, _)| *partition as i32),
                &column(&offsets, |(_, (epoch, _))| *epoch),
                &column(&offsets, |(_, (_, seq))| i64::try_from(*seq).unwrap_or(i64::MAX)),
            ],
        )
        .await?;
    Ok(())
}

/// One column of a multi-row insert.
fn column<'a, T, V>(records: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    records.iter().map(value).collect()
}

/// Inserts events, in call order (their positions increase in it); returns the keys that were
/// new.
async fn insert_events(
    transaction: &Transaction<'_>,
    events: &[&EventRecord],
) -> Result<HashSet<String>, Failure> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO events (key, id, type, at_ms, room_sid, room_name, participant_sid, participant_identity, \
             track_sid, node_id, payload) \
             SELECT key, id, type, at_ms, room_sid, room_name, participant_sid, participant_identity, track_sid, \
             node_id, payload \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY AS input (key, id, type, at_ms, \
             room_sid, room_name, participant_sid, participant_identity, track_sid, node_id, payload, ordinal) \
             ORDER BY ordinal \
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .await?;
    let rows = transaction
        .query(
            &statement,
            &[
                &column(events, |e| e.key.as_str()),
                &column(events, |e| e.id.as_str()),
                &column(events, |e| e.event_type.as_str()),
                &column(events, |e| e.at.0),
                &column(events, |e| e.room_sid.as_str()),
                &column(events, |e| e.room_name.as_str()),
                &column(events, |e| e.participant_sid.as_str()),
                &column(events, |e| e.participant_identity.as_str()),
                &column(events, |e| e.track_sid.as_str()),
                &column(events, |e| e.node_id.as_str()),
                &column(events, |e| e.payload.as_str()),
            ],
        )
        .await?;
    Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?)
}

/// Applies the projections of the events that were new, in call order.
async fn project(
    transaction: &Transaction<'_>,
    events: &[&EventRecord],
    mut new_events: HashSet<String>,
) -> Result<(), Failure> {
    // A key repeated within the batch was inserted once: its first occurrence projects.
    let projections: Vec<&Projection> = events
        .iter()
        .filter(|event| new_events.remove(&event.key))
        .flat_map(|event| &event.projections)
        .collect();
    if projections.is_empty() {
        return Ok(());
    }
    // Prepared before any is executed, so that the executions below are sent in order, one
    // after the other, without a round trip in between: a participant's join, activation and
    // departure in one batch apply in that order.
    let statements = ProjectionStatements::prepare(transaction).await?;
    let executions: Vec<_> = projections
        .into_iter()
        .map(|projection| execute_projection(transaction, &statements, projection))
        .collect();
    try_join_all(executions).await?;
    Ok(())
}

/// The prepared statement of each kind of projection.
struct ProjectionStatements {
    room_seen: tokio_postgres::Statement,
    room_ended: tokio_postgres::Statement,
    participant_joined: tokio_postgres::Statement,
    participant_active: tokio_postgres::Statement,
    participant_left: tokio_postgres::Statement,
    track_published: tokio_postgres::Statement,
    track_unpublished: tokio_postgres::Statement,
}

impl ProjectionStatements {
    /// Prepares them (once per connection: the pool caches them).
    async fn prepare(transaction: &Transaction<'_>) -> Result<Self, Failure> {
        let (
            room_seen,
            room_ended,
            participant_joined,
            participant_active,
            participant_left,
            track_published,
            track_unpublished,
        ) = tokio::try_join!(
            // A room keeps its first known name and its earliest start (a start of 0 or less is
            // unknown).
            transaction.prepare_cached(
                "INSERT INTO rooms (sid, name, started_at_ms) VALUES ($1, $2, $3) ON CONFLICT (sid) DO UPDATE SET \
                 name = CASE WHEN rooms.name = '' THEN excluded.name ELSE rooms.name END, \
                 started_at_ms = CASE WHEN rooms.started_at_ms <= 0 THEN excluded.started_at_ms \
                     WHEN excluded.started_at_ms <= 0 THEN rooms.started_at_ms \
                     ELSE LEAST(rooms.started_at_ms, excluded.started_at_ms) END",
            ),
            transaction.prepare_cached("UPDATE rooms SET ended_at_ms = $2 WHERE sid = $1"),
            // Times merge to the earliest known (LEAST ignores NULLs); a participant already
            // further along keeps its state; an identity, once known, stays.
            transaction.prepare_cached(
                "INSERT INTO participants (room_sid, sid, identity, joined_at_ms, state) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (room_sid, sid) DO UPDATE SET \
                 identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                 joined_at_ms = LEAST(participants.joined_at_ms, excluded.joined_at_ms)",
            ),
            transaction.prepare_cached(
                "INSERT INTO participants (room_sid, sid, identity, joined_at_ms, active_at_ms, state) \
                 VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                 identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                 joined_at_ms = LEAST(participants.joined_at_ms, excluded.joined_at_ms), \
                 active_at_ms = LEAST(participants.active_at_ms, excluded.active_at_ms), \
                 left_at_ms = NULL, state = excluded.state",
            ),
            transaction.prepare_cached(
                "INSERT INTO participants (room_sid, sid, identity, left_at_ms, state) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (room_sid, sid) DO UPDATE SET \
                 identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                 left_at_ms = excluded.left_at_ms, state = excluded.state",
            ),
            transaction.prepare_cached(
                "INSERT INTO tracks (room_sid, sid, participant_sid, kind, source, mime_type, published_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                 participant_sid = excluded.participant_sid, kind = excluded.kind, source = excluded.source, \
                 mime_type = CASE WHEN excluded.mime_type = '' THEN tracks.mime_type ELSE excluded.mime_type END, \
                 published_at_ms = LEAST(tracks.published_at_ms, excluded.published_at_ms), \
                 unpublished_at_ms = NULL",
            ),
            transaction.prepare_cached(
                "INSERT INTO tracks (room_sid, sid, participant_sid, kind, source, mime_type, unpublished_at_ms) \
                 VALUES ($1, $2, $3, '', '', '', $4) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                 unpublished_at_ms = excluded.unpublished_at_ms",
            ),
        )?;
        Ok(Self {
            room_seen,
            room_ended,
            participant_joined,
            participant_active,
            participant_left,
            track_published,
            track_unpublished,
        })
    }
}

/// Executes one projection (sent when first polled).
fn execute_projection<'a>(
    transaction: &'a Transaction<'_>,
    statements: &'a ProjectionStatements,
    projection: &'a Projection,
) -> BoxFuture<'a, Result<u64, tokio_postgres::Error>> {
    match projection {
        Projection::RoomSeen { sid, name, at } => {
            async move { transaction.execute(&statements.room_seen, &[sid, name, &at.0]).await }
                .boxed()
        }
        Projection::RoomEnded { sid, at } => {
            async move { transaction.execute(&statements.room_ended, &[sid, &at.0]).await }.boxed()
        }
        Projection::ParticipantJoined { room_sid, sid, identity, at } => async move {
            let state = ParticipantState::Joined.as_str();
            transaction
                .execute(&statements.participant_joined, &[room_sid, sid, identity, &at.0, &state])
                .await
        }
        .boxed(),
        Projection::ParticipantActive { room_sid, sid, identity, at } => async move {
            let state = ParticipantState::Active.as_str();
            transaction
                .execute(&statements.participant_active, &[room_sid, sid, identity, &at.0, &state])
                .await
        }
        .boxed(),
        Projection::ParticipantLeft { room_sid, sid, identity, at, aborted } => async move {
            let state =
                if *aborted { ParticipantState::Aborted } else { ParticipantState::Left }.as_str();
            transaction
                .execute(&statements.participant_left, &[room_sid, sid, identity, &at.0, &state])
                .await
        }
        .boxed(),
        Projection::TrackPublished {
            room_sid,
            sid,
            participant_sid,
            kind,
            source,
            mime_type,
            at,
        } => async move {
            transaction
                .execute(
                    &statements.track_published,
                    &[room_sid, sid, participant_sid, kind, source, mime_type, &at.0],
                )
                .await
        }
        .boxed(),
        Projection::TrackUnpublished { room_sid, sid, participant_sid, at } => async move {
            transaction
                .execute(&statements.track_unpublished, &[room_sid, sid, participant_sid, &at.0])
                .await
        }
        .boxed(),
    }
}

/// Inserts stats windows (a repeated id is stored once).
async fn insert_windows(
    transaction: &Transaction<'_>,
    windows: &[&StatsWindowRecord],
) -> Result<(), Failure> {
    if windows.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO stats_windows (id, room_sid, room_name, participant_sid, participant_identity, \
             track_sid, direction, kind, mime, node_id, start_ms, end_ms, flushed_at_ms, covered_ms, bytes, packets, \
             packets_lost, avg_bps, peak_bps, resolution_ms, jitter_max, rtt_max, score, min_score, median_score, \
             nacks, plis, firs, frames, samples, invalid_samples, mos) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], \
             $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::float8[], $19::float8[], \
             $20::bigint[], $21::bigint[], $22::bigint[], $23::real[], $24::real[], $25::real[], $26::bigint[], \
             $27::bigint[], $28::bigint[], $29::bigint[], $30::bigint[], $31::bigint[], $32::float8[]) \
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    let w = windows;
    transaction
        .execute(
            &statement,
            &[
                &column(w, |w| w.id.as_str()),
                &column(w, |w| w.room_sid.as_str()),
                &column(w, |w| w.room_name.as_str()),
                &column(w, |w| w.participant_sid.as_str()),
                &column(w, |w| w.participant_identity.as_str()),
                &column(w, |w| w.track_sid.as_str()),
                &column(w, |w| w.direction.as_str()),
                &column(w, |w| w.kind.as_str()),
                &column(w, |w| w.mime.as_str()),
                &column(w, |w| w.node_id.as_str()),
                &column(w, |w| w.start.0),
                &column(w, |w| w.end.0),
                &column(w, |w| w.flushed_at.0),
                &column(w, |w| w.covered_ms),
                &column(w, |w| stored_count(w.bytes)),
                &column(w, |w| stored_count(w.packets)),
                &column(w, |w| stored_count(w.packets_lost)),
                &column(w, |w| w.avg_bps),
                &column(w, |w| w.peak_bps),
                &column(w, |w| w.resolution_ms),
                &column(w, |w| i64::from(w.jitter_max)),
                &column(w, |w| i64::from(w.rtt_max)),
                &column(w, |w| w.score),
                &column(w, |w| w.min_score),
                &column(w, |w| w.median_score),
                &column(w, |w| stored_count(w.nacks)),
                &column(w, |w| stored_count(w.plis)),
                &column(w, |w| stored_count(w.firs)),
                &column(w, |w| stored_count(w.frames)),
                &column(w, |w| i64::from(w.samples)),
                &column(w, |w| i64::from(w.invalid_samples)),
                &column(w, |w| w.mos),
            ],
        )
        .await?;
    Ok(())
}

/// Stores nodes' room states, in order: a node keeps the latest by time.
async fn upsert_node_rooms(
    transaction: &Transaction<'_>,
    node_rooms: &[&NodeRoomsRecord],
) -> Result<(), Failure> {
    if node_rooms.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO nodes (node_id, first_seen_ms, last_seen_ms, rooms_sequence, rooms_at_ms, rooms_payload) \
             VALUES ($1, $2, $2, $3, $2, $4) ON CONFLICT (node_id) DO UPDATE SET \
             first_seen_ms = LEAST(nodes.first_seen_ms, excluded.first_seen_ms), \
             last_seen_ms = GREATEST(nodes.last_seen_ms, excluded.last_seen_ms), \
             rooms_sequence = CASE WHEN nodes.rooms_at_ms IS NULL OR excluded.rooms_at_ms >= nodes.rooms_at_ms \
                 THEN excluded.rooms_sequence ELSE nodes.rooms_sequence END, \
             rooms_payload = CASE WHEN nodes.rooms_at_ms IS NULL OR excluded.rooms_at_ms >= nodes.rooms_at_ms \
                 THEN excluded.rooms_payload ELSE nodes.rooms_payload END, \
             rooms_at_ms = GREATEST(nodes.rooms_at_ms, excluded.rooms_at_ms)",
        )
        .await?;
    let sequences: Vec<i64> = node_rooms.iter().map(|rooms| stored_count(rooms.sequence)).collect();
    // One statement per record (a node may appear twice), pipelined in order.
    let statement = &statement;
    try_join_all(node_rooms.iter().zip(&sequences).map(|(rooms, sequence)| async move {
        transaction
            .execute(statement, &[&rooms.node_id, &rooms.at.0, sequence, &rooms.payload])
            .await
    }))
    .await?;
    Ok(())
}

/// Writes issues by [`IssueRecord`]'s merge rule (each id at most once: the callers pass the
/// deciding record of each, see [`IssueRecord::deciding`]).
async fn upsert_issues(
    transaction: &Transaction<'_>,
    issues: &[&IssueRecord],
) -> Result<(), Failure> {
    if issues.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO issues (id, room_sid, room_name, participant_sid, participant_identity, track_sid, \
             direction, kind, value, threshold, started_at_ms, ended_at_ms, affected) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::float8[], $10::float8[], $11::int8[], $12::int8[], $13::text[]) \
             ON CONFLICT (id) DO UPDATE SET ended_at_ms = excluded.ended_at_ms, value = excluded.value, \
             affected = excluded.affected WHERE excluded.ended_at_ms IS NOT NULL AND issues.ended_at_ms IS NULL",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &column(issues, |i| i.id.as_str()),
                &column(issues, |i| i.room_sid.as_str()),
                &column(issues, |i| i.room_name.as_str()),
                &column(issues, |i| i.participant_sid.as_str()),
                &column(issues, |i| i.participant_identity.as_str()),
                &column(issues, |i| i.track_sid.as_str()),
                &column(issues, |i| i.direction.as_str()),
                &column(issues, |i| i.kind.as_str()),
                &column(issues, |i| i.value),
                &column(issues, |i| i.threshold),
                &column(issues, |i| i.started_at.0),
                &column(issues, |i| i.ended_at.map(|at| at.0)),
                &column(issues, |i| i.affected_text()),
            ],
        )
        .await?;
    Ok(())
}

/// Keeps each quality state with its worker's record, if that record is of the same worker
/// (its `created_at`); an empty state clears the stored one (see [`QualityRecord`]). Each worker
/// at most once ([`QualityRecord::last_states`]), after the workers are written.
async fn keep_quality(
    transaction: &Transaction<'_>,
    quality: &[&QualityRecord],
) -> Result<(), Failure> {
    if quality.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "UPDATE live_workers w SET quality = q.quality \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS q (room_id, participant_id, created_at_ms, quality) \
             WHERE w.room_id = q.room_id AND w.participant_id = q.participant_id AND w.created_at_ms = q.created_at_ms",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &column(quality, |q| q.room_id.as_str()),
                &column(quality, |q| q.participant_id.as_str()),
                &column(quality, |q| q.created_at.0),
                &column(quality, |q| q.tracks_text()),
            ],
        )
        .await?;
    Ok(())
}

/// Keeps the workers' states (open, or closed until their reap) and removes the reaped ones'
/// (each worker at most once: the callers pass the last state of each, see
/// [`WorkerRecord::last_states`]).
async fn apply_workers(
    transaction: &Transaction<'_>,
    open: &[&WorkerRecord],
    closed: &[&WorkerRecord],
) -> Result<(), Failure> {
    let upsert = async {
        if open.is_empty() {
            return Ok::<_, Failure>(());
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO live_workers (room_id, participant_id, room_name, identity, node_id, created_at_ms, connected, guards, closed_at_ms) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::text[], $9::int8[]) \
                 ON CONFLICT (room_id, participant_id) DO UPDATE SET \
                 room_name = excluded.room_name, identity = excluded.identity, node_id = excluded.node_id, \
                 created_at_ms = excluded.created_at_ms, connected = excluded.connected, guards = excluded.guards, \
                 closed_at_ms = excluded.closed_at_ms, \
                 quality = CASE WHEN live_workers.created_at_ms = excluded.created_at_ms THEN live_workers.quality END",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &column(open, |w| w.room_id.as_str()),
                    &column(open, |w| w.participant_id.as_str()),
                    &column(open, |w| w.room_name.as_str()),
                    &column(open, |w| w.identity.as_str()),
                    &column(open, |w| w.node_id.as_str()),
                    &column(open, |w| w.created_at.0),
                    &column(open, |w| w.connected),
                    &column(open, |w| w.guards_text()),
                    &column(open, |w| w.closed_at.map(|at| at.0)),
                ],
            )
            .await?;
        Ok(())
    };
    let delete = async {
        if closed.is_empty() {
            return Ok::<_, Failure>(());
        }
        let statement = transaction
            .prepare_cached(
                "DELETE FROM live_workers w USING unnest($1::text[], $2::text[]) AS c (room_id, participant_id) \
                 WHERE w.room_id = c.room_id AND w.participant_id = c.participant_id",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &column(closed, |w| w.room_id.as_str()),
                    &column(closed, |w| w.participant_id.as_str()),
                ],
            )
            .await?;
        Ok(())
    };
    tokio::try_join!(upsert, delete)?;
    Ok(())
}

/// Adds rate cells to the stored ones (saturating at `i64::MAX`).
async fn add_rate_cells(
    transaction: &Transaction<'_>,
    records: &[&RateCellRecord],
) -> Result<(), Failure> {
    if records.is_empty() {
        return Ok(());
    }
    // One row per cell (a statement may not update a row twice), in key order (so that
    // concurrent transactions lock rows in the same order).
    let mut cells: BTreeMap<(&str, i64), RateCell> = BTreeMap::new();
    for record in records {
        let cell = cells.entry((record.node_id.as_str(), record.second)).or_default();
        cell.bytes_in = cell.bytes_in.saturating_add(record.cell.bytes_in);
        cell.bytes_out = cell.bytes_out.saturating_add(record.cell.bytes_out);
        cell.packets_in = cell.packets_in.saturating_add(record.cell.packets_in);
        cell.packets_out = cell.packets_out.saturating_add(record.cell.packets_out);
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO node_rate_cells (node_id, second, bytes_in, bytes_out, packets_in, packets_out) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
             ON CONFLICT (node_id, second) DO UPDATE SET \
             bytes_in = CASE WHEN node_rate_cells.bytes_in > 9223372036854775807 - excluded.bytes_in \
                 THEN 9223372036854775807 ELSE node_rate_cells.bytes_in + excluded.bytes_in END, \
             bytes_out = CASE WHEN node_rate_cells.bytes_out > 9223372036854775807 - excluded.bytes_out \
                 THEN 9223372036854775807 ELSE node_rate_cells.bytes_out + excluded.bytes_out END, \
             packets_in = CASE WHEN node_rate_cells.packets_in > 9223372036854775807 - excluded.packets_in \
                 THEN 9223372036854775807 ELSE node_rate_cells.packets_in + excluded.packets_in END, \
             packets_out = CASE WHEN node_rate_cells.packets_out > 9223372036854775807 - excluded.packets_out \
                 THEN 9223372036854775807 ELSE node_rate_cells.packets_out + excluded.packets_out END",
        )
        .await?;
    let cells: Vec<(&(&str, i64), &RateCell)> = cells.iter().collect();
    transaction
        .execute(
            &statement,
            &[
                &column(&cells, |(key, _)| key.0),
                &column(&cells, |(key, _)| key.1),
                &column(&cells, |(_, cell)| stored_count(cell.bytes_in)),
                &column(&cells, |(_, cell)| stored_count(cell.bytes_out)),
                &column(&cells, |(_, cell)| stored_count(cell.packets_in)),
                &column(&cells, |(_, cell)| stored_count(cell.packets_out)),
            ],
        )
        .await?;
    Ok(())
}

/// Records when the batch heard from each node: its earliest and latest times merge with the
/// stored ones. A node's time is the latest the batch has of it (events' times, windows' ends,
/// rate cells' seconds), as SQLite records it.
async fn touch_nodes(
    transaction: &Transaction<'_>,
    events: &[&EventRecord],
    windows: &[&StatsWindowRecord],
    rate_cells: &[&RateCellRecord],
) -> Result<(), Failure> {
    let mut latest: BTreeMap<&str, UnixMillis> = BTreeMap::new();
    let mut note = |node, at: UnixMillis| {
        latest
            .entry(node)
            .and_modify(|time: &mut UnixMillis| *time = (*time).max(at))
            .or_insert(at);
    };
    for event in events.iter().filter(|event| !event.node_id.is_empty()) {
        note(event.node_id.as_str(), event.at);
    }
    for window in windows.iter().filter(|window| !window.node_id.is_empty()) {
        note(window.node_id.as_str(), window.end);
    }
    for cell in rate_cells {
        note(cell.node_id.as_str(), UnixMillis::from_secs(cell.second));
    }
    if latest.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO nodes (node_id, first_seen_ms, last_seen_ms) \
             SELECT node_id, at_ms, at_ms FROM unnest($1::text[], $2::bigint[]) AS input (node_id, at_ms) \
             ON CONFLICT (node_id) DO UPDATE SET first_seen_ms = LEAST(nodes.first_seen_ms, excluded.first_seen_ms), \
             last_seen_ms = GREATEST(nodes.last_seen_ms, excluded.last_seen_ms)",
        )
        .await?;
    let nodes: Vec<&str> = latest.keys().copied().collect();
    let times: Vec<i64> = latest.values().map(|at| at.0).collect();
    transaction.execute(&statement, &[&nodes, &times]).await?;
    Ok(())
}

/// Inserts webhook messages; returns the keys that were new.
async fn insert_messages(
    transaction: &Transaction<'_>,
    webhooks: &[(usize, &OutgoingWebhook)],
) -> Result<HashSet<String>, Failure> {
    if webhooks.is_empty() {
        return Ok(HashSet::new());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO webhook_messages (id, event, event_id, resource_key, room_sid, room_name, payload, \
             created_at_ms, participant_sid, participant_identity, track_sid, egress_id, ingress_id, key) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
             $14::text[]) \
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .await?;
    let w = webhooks;
    let rows = transaction
        .query(
            &statement,
            &[
                &column(w, |(_, w)| w.message.webhook.id.as_str()),
                &column(w, |(_, w)| w.message.webhook.event.as_str()),
                &column(w, |(_, w)| w.message.event_id.as_str()),
                &column(w, |(_, w)| w.message.webhook.resource_key.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.room_sid.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.room_name.as_str()),
                &column(w, |(_, w)| w.message.webhook.body.as_str()),
                &column(w, |(_, w)| w.message.created_at.0),
                &column(w, |(_, w)| w.message.webhook.subject.participant_sid.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.participant_identity.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.track_sid.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.egress_id.as_str()),
                &column(w, |(_, w)| w.message.webhook.subject.ingress_id.as_str()),
                &column(w, |(_, w)| w.message.key.as_str()),
            ],
        )
        .await?;
    Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?)
}

/// Creates one delivery per endpoint for each message that was new, in message order (their ids
/// increase in it); returns, for each delivery, the batch its message came in.
async fn insert_deliveries(
    transaction: &Transaction<'_>,
    webhooks: &[(usize, &OutgoingWebhook)],
    mut new_messages: HashSet<String>,
) -> Result<Vec<usize>, Failure> {
    // A message repeated within the batches was inserted once: its first occurrence delivers.
    let rows: Vec<(usize, &OutgoingWebhook, &str)> = webhooks
        .iter()
        .filter(|(_, webhook)| new_messages.remove(&webhook.message.key))
        .flat_map(|&(index, webhook)| {
            webhook.endpoint_ids.iter().map(move |endpoint| (index, webhook, endpoint.as_str()))
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO webhook_deliveries (message_key, message_id, endpoint_id, resource_key, event, status, \
             attempts, retry_base, next_attempt_at_ms, created_at_ms, updated_at_ms) \
             SELECT message_key, message_id, endpoint_id, resource_key, event, 'pending', 0, 0, created_at_ms, \
             created_at_ms, created_at_ms \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) WITH ORDINALITY \
             AS input (message_key, message_id, endpoint_id, resource_key, event, created_at_ms, ordinal) \
             ORDER BY ordinal",
        )
        .await?;
    let parameters: [&(dyn ToSql + Sync); 6] = [
        &column(&rows, |(_, w, _)| w.message.key.as_str()),
        &column(&rows, |(_, w, _)| w.message.webhook.id.as_str()),
        &column(&rows, |(_, _, endpoint)| *endpoint),
        &column(&rows, |(_, w, _)| w.message.webhook.resource_key.as_str()),
        &column(&rows, |(_, w, _)| w.message.webhook.event.as_str()),
        &column(&rows, |(_, w, _)| w.message.created_at.0),
    ];
    transaction.execute(&statement, &parameters).await?;
    Ok(rows.iter().map(|(index, _, _)| *index).collect())
}
