//! The analytics side of the PostgreSQL store: writes (handed to the writer task), the query
//! routes' reads, and pruning in batches.

use async_trait::async_trait;
use telemetry_core::rates::RateCell;
use telemetry_core::{Direction, StreamKind, UnixMillis};
use tokio::sync::oneshot;
use tokio_postgres::Row;

use super::writer::WriteRequest;
use super::{Failure, Parameters, PostgresStore, enum_column, lock, u32_column};
use crate::model::{
    AdapterStateRecord, EventsQuery, IssueRecord, IssuesQuery, NodeRoomsRecord, NodeSummary,
    OpenRoomRecord, Page, ParticipantRow, ParticipantState, PruneCounts, QualityRecord, RoomCursor,
    RoomDetail, RoomSummary, RoomsQuery, StatsQuery, StatsWindowRecord, StoreCounts, StoredEvent,
    TrackRow, WorkerRecord, WriteBatch, WriteReceipt, count_from_stored,
};
use crate::{AnalyticsStore, StoreError};

/// Most rows one pruning statement removes (each statement is its own transaction), so that
/// no transaction holds locks or bloats the WAL for long.
const PRUNE_BATCH: i64 = 5_000;

const ROOM_COLUMNS: &str = "r.sid, r.name, r.started_at_ms, r.ended_at_ms, \
     (SELECT COUNT(*) FROM participants p WHERE p.room_sid = r.sid), \
     (SELECT COUNT(*) FROM tracks t WHERE t.room_sid = r.sid AND t.published_at_ms IS NOT NULL)";

fn room_from_row(row: &Row) -> Result<RoomSummary, Failure> {
    Ok(RoomSummary {
        sid: row.try_get(0)?,
        name: row.try_get(1)?,
        started_at: UnixMillis(row.try_get(2)?),
        ended_at: row.try_get::<_, Option<i64>>(3)?.map(UnixMillis),
        num_participants: count_from_stored(row.try_get(4)?),
        num_tracks: count_from_stored(row.try_get(5)?),
    })
}

const STATS_COLUMNS: &str = "id, room_sid, room_name, participant_sid, participant_identity, track_sid, \
     direction, kind, mime, node_id, start_ms, end_ms, flushed_at_ms, covered_ms, bytes, packets, packets_lost, \
     avg_bps, peak_bps, resolution_ms, jitter_max, rtt_max, score, min_score, median_score, nacks, plis, firs, \
     frames, samples, invalid_samples, mos";

fn window_from_row(row: &Row) -> Result<StatsWindowRecord, Failure> {
    Ok(StatsWindowRecord {
        id: row.try_get(0)?,
        room_sid: row.try_get(1)?,
        room_name: row.try_get(2)?,
        participant_sid: row.try_get(3)?,
        participant_identity: row.try_get(4)?,
        track_sid: row.try_get(5)?,
        direction: enum_column(row, 6, Direction::parse)?,
        kind: enum_column(row, 7, StreamKind::parse)?,
        mime: row.try_get(8)?,
        node_id: row.try_get(9)?,
        start: UnixMillis(row.try_get(10)?),
        end: UnixMillis(row.try_get(11)?),
        flushed_at: UnixMillis(row.try_get(12)?),
        covered_ms: row.try_get(13)?,
        bytes: count_from_stored(row.try_get(14)?),
        packets: count_from_stored(row.try_get(15)?),
        packets_lost: count_from_stored(row.try_get(16)?),
        avg_bps: row.try_get(17)?,
        peak_bps: row.try_get(18)?,
        resolution_ms: row.try_get(19)?,
        jitter_max: u32_column(row, 20)?,
        rtt_max: u32_column(row, 21)?,
        score: row.try_get(22)?,
        min_score: row.try_get(23)?,
        median_score: row.try_get(24)?,
        nacks: count_from_stored(row.try_get(25)?),
        plis: count_from_stored(row.try_get(26)?),
        firs: count_from_stored(row.try_get(27)?),
        frames: count_from_stored(row.try_get(28)?),
        samples: u32_column(row, 29)?,
        invalid_samples: u32_column(row, 30)?,
        mos: row.try_get(31)?,
    })
}

/// `text` as a `LIKE` pattern that matches it anywhere, literally (`!` escapes).
fn like_pattern(text: &str) -> String {
    let escaped = text.replace('!', "!!").replace('%', "!%").replace('_', "!_");
    format!("%{escaped}%")
}

#[async_trait]
impl AnalyticsStore for PostgresStore {
    async fn write(&self, batch: WriteBatch) -> Result<WriteReceipt, StoreError> {
        if batch.is_empty() {
            return Ok(WriteReceipt::default());
        }
        let (done, answer) = oneshot::channel();
        {
            let writer = lock(&self.writer);
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer.send(WriteRequest { batch, done }).map_err(|_| StoreError::Closed)?;
        }
        let receipt = answer.await.map_err(|_| StoreError::Closed)??;
        if receipt.deliveries > 0 {
            self.wake_dispatchers();
        }
        Ok(receipt)
    }

    async fn rooms(&self, query: RoomsQuery) -> Result<Page<RoomSummary, RoomCursor>, StoreError> {
        async {
            let mut parameters = Parameters::default();
            let mut sql = format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE TRUE");
            match query.active {
                Some(true) => sql.push_str(" AND r.ended_at_ms IS NULL"),
                Some(false) => sql.push_str(" AND r.ended_at_ms IS NOT NULL"),
                None => {}
            }
            if let Some(name) = &query.name_contains {
                let pattern = parameters.push(like_pattern(name));
                sql.push_str(&format!(" AND r.name LIKE {pattern} ESCAPE '!'"));
            }
            if let Some(after) = &query.after {
                let started_at = parameters.push(after.started_at.0);
                let sid = parameters.push(after.sid.clone());
                sql.push_str(&format!(" AND (r.started_at_ms, r.sid) < ({started_at}, {sid})"));
            }
            let limit = parameters.push(i64::from(query.limit.saturating_add(1)));
            sql.push_str(&format!(" ORDER BY r.started_at_ms DESC, r.sid DESC LIMIT {limit}"));
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &parameters.as_refs()).await?;
            let items = rows.iter().map(room_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| RoomCursor {
                started_at: last.started_at,
                sid: last.sid.clone(),
            }))
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn room(&self, sid: &str) -> Result<Option<RoomDetail>, StoreError> {
        async {
            let client = self.client().await?;
            let (room, participants, tracks) = tokio::try_join!(
                async {
                    let statement = client
                        .prepare_cached(&format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.sid = $1"))
                        .await?;
                    Ok::<_, Failure>(client.query_opt(&statement, &[&sid]).await?)
                },
                async {
                    // SQLite sorts NULLs first; so does this.
                    let statement = client
                        .prepare_cached(
                            "SELECT sid, identity, joined_at_ms, active_at_ms, left_at_ms, state FROM participants \
                             WHERE room_sid = $1 \
                             ORDER BY COALESCE(joined_at_ms, active_at_ms, left_at_ms) NULLS FIRST, sid",
                        )
                        .await?;
                    Ok::<_, Failure>(client.query(&statement, &[&sid]).await?)
                },
                async {
                    let statement = client
                        .prepare_cached(
                            "SELECT sid, participant_sid, kind, source, mime_type, published_at_ms, unpublished_at_ms \
                             FROM tracks WHERE room_sid = $1 \
                             ORDER BY COALESCE(published_at_ms, unpublished_at_ms) NULLS FIRST, sid",
                        )
                        .await?;
                    Ok::<_, Failure>(client.query(&statement, &[&sid]).await?)
                },
            )?;
            let Some(room) = room else { return Ok(None) };
            let participants = participants
                .iter()
                .map(|row| {
                    Ok(ParticipantRow {
                        sid: row.try_get(0)?,
                        identity: row.try_get(1)?,
                        joined_at: row.try_get::<_, Option<i64>>(2)?.map(UnixMillis),
                        active_at: row.try_get::<_, Option<i64>>(3)?.map(UnixMillis),
                        left_at: row.try_get::<_, Option<i64>>(4)?.map(UnixMillis),
                        state: enum_column(row, 5, ParticipantState::parse)?,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            let tracks = tracks
                .iter()
                .map(|row| {
                    Ok(TrackRow {
                        sid: row.try_get(0)?,
                        participant_sid: row.try_get(1)?,
                        kind: row.try_get(2)?,
                        source: row.try_get(3)?,
                        mime_type: row.try_get(4)?,
                        published_at: row.try_get::<_, Option<i64>>(5)?.map(UnixMillis),
                        unpublished_at: row.try_get::<_, Option<i64>>(6)?.map(UnixMillis),
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            Ok(Some(RoomDetail { room: room_from_row(&room)?, participants, tracks }))
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn room_events(&self, query: EventsQuery) -> Result<Page<StoredEvent, i64>, StoreError> {
        async {
            let mut parameters = Parameters::default();
            let room = parameters.push(query.room_sid.clone());
            let mut sql =
                format!("SELECT position, type, payload FROM events WHERE room_sid = {room}");
            if let Some(event_type) = &query.event_type {
                let event_type = parameters.push(event_type.clone());
                sql.push_str(&format!(" AND type = {event_type}"));
            }
            if let Some(after) = query.after {
                let after = parameters.push(after);
                sql.push_str(&format!(" AND position > {after}"));
            }
            let limit = parameters.push(i64::from(query.limit.saturating_add(1)));
            sql.push_str(&format!(" ORDER BY position LIMIT {limit}"));
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &parameters.as_refs()).await?;
            let items = rows
                .iter()
                .map(|row| {
                    Ok(StoredEvent {
                        position: row.try_get(0)?,
                        event_type: row.try_get(1)?,
                        payload: row.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| last.position))
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsWindowRecord>, StoreError> {
        async {
            let mut parameters = Parameters::default();
            let mut sql = format!("SELECT {STATS_COLUMNS} FROM stats_windows WHERE TRUE");
            let direction = query.direction.map(|direction| direction.as_str().to_owned());
            for (column, value) in [
                ("room_sid", &query.room_sid),
                ("participant_sid", &query.participant_sid),
                ("track_sid", &query.track_sid),
                ("direction", &direction),
            ] {
                if let Some(value) = value {
                    let value = parameters.push(value.clone());
                    sql.push_str(&format!(" AND {column} = {value}"));
                }
            }
            if let Some(from) = query.from {
                let from = parameters.push(from.0);
                sql.push_str(&format!(" AND end_ms > {from}"));
            }
            if let Some(to) = query.to {
                let to = parameters.push(to.0);
                sql.push_str(&format!(" AND start_ms < {to}"));
            }
            let limit = parameters.push(i64::from(query.limit));
            sql.push_str(&format!(
                " ORDER BY track_sid, direction, participant_sid, start_ms LIMIT {limit}"
            ));
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &parameters.as_refs()).await?;
            rows.iter().map(window_from_row).collect::<Result<Vec<_>, Failure>>()
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn issues(&self, query: IssuesQuery) -> Result<Vec<IssueRecord>, StoreError> {
        async {
            let mut parameters = Parameters::default();
            let mut sql = "SELECT id, room_sid, room_name, participant_sid, participant_identity, track_sid, \
                 direction, kind, value, threshold, started_at_ms, ended_at_ms, affected FROM issues WHERE TRUE"
                .to_owned();
            match query.open {
                Some(true) => sql.push_str(" AND ended_at_ms IS NULL"),
                Some(false) => sql.push_str(" AND ended_at_ms IS NOT NULL"),
                None => {}
            }
            if let Some(room_sid) = &query.room_sid {
                let room_sid = parameters.push(room_sid.clone());
                sql.push_str(&format!(" AND room_sid = {room_sid}"));
            }
            if let Some(kind) = query.kind {
                let kind = parameters.push(kind.as_str().to_owned());
                sql.push_str(&format!(" AND kind = {kind}"));
            }
            if let Some(from) = query.from {
                let from = parameters.push(from.0);
                sql.push_str(&format!(" AND (ended_at_ms IS NULL OR ended_at_ms > {from})"));
            }
            if let Some(to) = query.to {
                let to = parameters.push(to.0);
                sql.push_str(&format!(" AND started_at_ms < {to}"));
            }
            let limit = parameters.push(i64::from(query.limit));
            sql.push_str(&format!(" ORDER BY started_at_ms, id LIMIT {limit}"));
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &parameters.as_refs()).await?;
            let mut issues = Vec::with_capacity(rows.len());
            for row in &rows {
                let affected: &str = row.try_get(12)?;
                issues.push(IssueRecord {
                    id: row.try_get(0)?,
                    room_sid: row.try_get(1)?,
                    room_name: row.try_get(2)?,
                    participant_sid: row.try_get(3)?,
                    participant_identity: row.try_get(4)?,
                    track_sid: row.try_get(5)?,
                    direction: enum_column(row, 6, Direction::parse)?,
                    kind: enum_column(row, 7, telemetry_core::quality::IssueKind::parse)?,
                    value: row.try_get(8)?,
                    threshold: row.try_get(9)?,
                    started_at: UnixMillis(row.try_get(10)?),
                    ended_at: row.try_get::<_, Option<i64>>(11)?.map(UnixMillis),
                    affected: IssueRecord::affected_from_text(affected).map_err(Failure::Store)?,
                });
            }
            Ok(issues)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn live_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT room_id, participant_id, room_name, identity, node_id, created_at_ms, connected, guards, closed_at_ms \
                     FROM live_workers ORDER BY room_id, participant_id",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            let mut workers = Vec::with_capacity(rows.len());
            for row in &rows {
                let guards: String = row.try_get(7)?;
                let closed_at = row.try_get::<_, Option<i64>>(8)?.map(UnixMillis);
                workers.push(WorkerRecord {
                    room_id: row.try_get(0)?,
                    participant_id: row.try_get(1)?,
                    room_name: row.try_get(2)?,
                    identity: row.try_get(3)?,
                    node_id: row.try_get(4)?,
                    created_at: UnixMillis(row.try_get(5)?),
                    connected: row.try_get(6)?,
                    guards: WorkerRecord::guards_from_text(&guards).map_err(Failure::Store)?,
                    open: closed_at.is_none(),
                    closed_at,
                    reaped: false,
                });
            }
            Ok(workers)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn open_rooms(&self) -> Result<Vec<OpenRoomRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT sid, name, started_at_ms, node_id FROM (SELECT r.sid, r.name, r.started_at_ms, \
                     (SELECT e.node_id FROM events e WHERE e.room_sid = r.sid AND e.type = 'ROOM_CREATED' \
                      ORDER BY e.position LIMIT 1) AS node_id \
                     FROM rooms r WHERE r.ended_at_ms IS NULL) o WHERE node_id IS NOT NULL ORDER BY sid",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            let mut rooms = Vec::with_capacity(rows.len());
            for row in &rows {
                rooms.push(OpenRoomRecord {
                    sid: row.try_get(0)?,
                    name: row.try_get(1)?,
                    started_at: UnixMillis(row.try_get(2)?),
                    node_id: row.try_get(3)?,
                });
            }
            Ok(rooms)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn quality_states(&self) -> Result<Vec<QualityRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT room_id, participant_id, room_name, created_at_ms, quality FROM live_workers \
                     WHERE quality IS NOT NULL AND closed_at_ms IS NULL ORDER BY room_id, participant_id",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            let mut states = Vec::with_capacity(rows.len());
            for row in &rows {
                let tracks: String = row.try_get(4)?;
                states.push(QualityRecord {
                    room_id: row.try_get(0)?,
                    participant_id: row.try_get(1)?,
                    room_name: row.try_get(2)?,
                    created_at: UnixMillis(row.try_get(3)?),
                    tracks: QualityRecord::tracks_from_text(&tracks).map_err(Failure::Store)?,
                });
            }
            Ok(states)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn put_adapter_state(&self, record: AdapterStateRecord) -> Result<bool, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO adapter_states (adapter, key, generation, state, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (adapter, key) DO UPDATE SET generation = excluded.generation, \
                     state = excluded.state, updated_at_ms = excluded.updated_at_ms \
                     WHERE adapter_states.generation < excluded.generation",
                )
                .await?;
            let changed = client
                .execute(
                    &statement,
                    &[
                        &record.adapter,
                        &record.key,
                        &record.generation,
                        &record.state,
                        &record.updated_at.0,
                    ],
                )
                .await?;
            Ok(changed > 0)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn adapter_states(&self, adapter: &str) -> Result<Vec<AdapterStateRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT adapter, key, generation, state, updated_at_ms FROM adapter_states \
                     WHERE adapter = $1 ORDER BY key",
                )
                .await?;
            let rows = client.query(&statement, &[&adapter]).await?;
            let mut states = Vec::with_capacity(rows.len());
            for row in &rows {
                states.push(AdapterStateRecord {
                    adapter: row.try_get(0)?,
                    key: row.try_get(1)?,
                    generation: row.try_get(2)?,
                    state: row.try_get(3)?,
                    updated_at: UnixMillis(row.try_get(4)?),
                });
            }
            Ok(states)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT node_id, first_seen_ms, last_seen_ms, rooms_sequence, rooms_at_ms, rooms_payload \
                     FROM nodes ORDER BY node_id",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            rows.iter()
                .map(|row| {
                    let node_id: String = row.try_get(0)?;
                    let rooms = match (
                        row.try_get::<_, Option<i64>>(3)?,
                        row.try_get::<_, Option<i64>>(4)?,
                        row.try_get::<_, Option<String>>(5)?,
                    ) {
                        (Some(sequence), Some(at), Some(payload)) => Some(NodeRoomsRecord {
                            node_id: node_id.clone(),
                            sequence: count_from_stored(sequence),
                            at: UnixMillis(at),
                            payload,
                        }),
                        _ => None,
                    };
                    Ok(NodeSummary {
                        node_id,
                        first_seen: UnixMillis(row.try_get(1)?),
                        last_seen: UnixMillis(row.try_get(2)?),
                        rooms,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn node_rates(
        &self,
        node_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(i64, RateCell)>, StoreError> {
        async {
            // Seconds that start in [from, to): from rounded down, to rounded up.
            let first = from.as_secs();
            let end = to.0.div_euclid(1000) + i64::from(to.0.rem_euclid(1000) != 0);
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT second, bytes_in, bytes_out, packets_in, packets_out FROM node_rate_cells \
                     WHERE node_id = $1 AND second >= $2 AND second < $3 ORDER BY second",
                )
                .await?;
            let rows = client.query(&statement, &[&node_id, &first, &end]).await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get(0)?,
                        RateCell {
                            bytes_in: count_from_stored(row.try_get(1)?),
                            bytes_out: count_from_stored(row.try_get(2)?),
                            packets_in: count_from_stored(row.try_get(3)?),
                            packets_out: count_from_stored(row.try_get(4)?),
                        },
                    ))
                })
                .collect::<Result<Vec<_>, Failure>>()
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM stats_windows), \
                     (SELECT COALESCE(SUM(samples), 0)::bigint FROM stats_windows), (SELECT COUNT(*) FROM rooms), \
                     (SELECT COUNT(*) FROM rooms WHERE ended_at_ms IS NULL), \
                     (SELECT COUNT(*) FROM participants p JOIN rooms r ON r.sid = p.room_sid \
                         WHERE r.ended_at_ms IS NULL AND p.state IN ('joined', 'active')), \
                     (SELECT COUNT(*) FROM tracks t JOIN rooms r ON r.sid = t.room_sid \
                         WHERE r.ended_at_ms IS NULL AND t.published_at_ms IS NOT NULL \
                         AND t.unpublished_at_ms IS NULL), \
                     (SELECT COUNT(*) FROM node_rate_cells)",
                )
                .await?;
            let row = client.query_one(&statement, &[]).await?;
            let count = |index: usize| -> Result<u64, Failure> {
                Ok(count_from_stored(row.try_get(index)?))
            };
            Ok(StoreCounts {
                events: count(0)?,
                stats_windows: count(1)?,
                samples: count(2)?,
                rooms: count(3)?,
                active_rooms: count(4)?,
                active_participants: count(5)?,
                published_tracks: count(6)?,
                rate_cells: count(7)?,
            })
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn prune(&self, before: UnixMillis) -> Result<PruneCounts, StoreError> {
        async {
            let mut counts = PruneCounts::default();
            let cutoff = before.0;
            // Each statement removes at most `PRUNE_BATCH` rows and commits on its own; a table
            // is done when a statement removes fewer. Participants and tracks go before their
            // rooms; a delivery's attempts go with it; messages once no delivery refers to them.
            type Count = fn(&mut PruneCounts) -> &mut u64;
            let steps: [(&str, i64, Count); 9] = [
                (
                    "DELETE FROM events WHERE position IN \
                     (SELECT position FROM events WHERE at_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.events,
                ),
                (
                    "DELETE FROM stats_windows WHERE id IN \
                     (SELECT id FROM stats_windows WHERE end_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.stats_windows,
                ),
                (
                    "DELETE FROM node_rate_cells WHERE (node_id, second) IN \
                     (SELECT node_id, second FROM node_rate_cells WHERE second < $1 LIMIT $2)",
                    before.as_secs(),
                    |c| &mut c.rate_cells,
                ),
                (
                    "DELETE FROM participants WHERE (room_sid, sid) IN \
                     (SELECT p.room_sid, p.sid FROM participants p JOIN rooms r ON r.sid = p.room_sid \
                      WHERE r.ended_at_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.participants,
                ),
                (
                    "DELETE FROM tracks WHERE (room_sid, sid) IN \
                     (SELECT t.room_sid, t.sid FROM tracks t JOIN rooms r ON r.sid = t.room_sid \
                      WHERE r.ended_at_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.tracks,
                ),
                (
                    "DELETE FROM rooms WHERE sid IN \
                     (SELECT sid FROM rooms WHERE ended_at_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.rooms,
                ),
                (
                    "WITH removed AS (DELETE FROM webhook_deliveries WHERE id IN \
                         (SELECT id FROM webhook_deliveries WHERE created_at_ms < $1 AND status <> 'pending' \
                          LIMIT $2) RETURNING id), \
                     attempts AS (DELETE FROM webhook_attempts a USING removed WHERE a.delivery_id = removed.id) \
                     SELECT COUNT(*) FROM removed",
                    cutoff,
                    |c| &mut c.deliveries,
                ),
                (
                    "DELETE FROM webhook_messages WHERE key IN \
                     (SELECT m.key FROM webhook_messages m WHERE m.created_at_ms < $1 \
                      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_key = m.key) LIMIT $2)",
                    cutoff,
                    |c| &mut c.messages,
                ),
                (
                    "DELETE FROM write_marks WHERE writer IN \
                     (SELECT writer FROM write_marks WHERE at_ms < $1 LIMIT $2)",
                    cutoff,
                    |c| &mut c.write_marks,
                ),
            ];
            let client = self.client().await?;
            for (sql, bound, count) in steps {
                let statement = client.prepare_cached(sql).await?;
                loop {
                    let removed = if sql.starts_with("WITH") {
                        let removed: i64 =
                            client.query_one(&statement, &[&bound, &PRUNE_BATCH]).await?.try_get(0)?;
                        count_from_stored(removed)
                    } else {
                        client.execute(&statement, &[&bound, &PRUNE_BATCH]).await?
                    };
                    *count(&mut counts) += removed;
                    if removed < PRUNE_BATCH as u64 {
                        break;
                    }
                }
            }
            Ok(counts)
        }
        .await
        .map_err(Failure::into_store)
    }
}
