//! Tests of the SQLite store against a real database file in a temporary folder.

use std::sync::Arc;

use telemetry_core::proto as lk;
use telemetry_core::rates::RateCell;
use telemetry_core::{
    CoreConfig, DEFAULT_GUARD, Direction, Output, StatsKey, TelemetryService, UnixMillis,
};

use crate::Store;
use crate::model::{
    EventRecord, EventsQuery, NodeRoomsRecord, RateCellRecord, RoomsQuery, StatsQuery,
    StatsWindowRecord, WriteBatch,
};
use crate::sqlite::{SqliteConfig, SqliteStore};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect("open")
}

fn room(sid: &str, name: &str) -> lk::Room {
    lk::Room {
        sid: sid.into(),
        name: name.into(),
        creation_time: 1_700_000_000,
        ..Default::default()
    }
}

fn participant(sid: &str) -> lk::ParticipantInfo {
    lk::ParticipantInfo { sid: sid.into(), identity: format!("{sid}-id"), ..Default::default() }
}

/// Runs calls through a real core and turns its outputs into a write batch.
fn batch_from(service: &TelemetryService, receiver: &telemetry_core::OutputReceiver) -> WriteBatch {
    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
    let mut batch = WriteBatch::default();
    for output in outputs {
        match output.output {
            Output::Call(call) => {
                batch.events.extend(call.event.as_ref().map(EventRecord::from_event))
            }
            Output::Stats(stats) => batch.stats.extend(StatsWindowRecord::from_batch(&stats)),
            Output::NodeRooms(rooms) => {
                batch.node_rooms.push(NodeRoomsRecord::from_node_rooms(&rooms, UnixMillis(0)))
            }
            Output::NodeRates(rates) => {
                batch.rate_cells.extend(rates.cells.iter().map(|cell| RateCellRecord {
                    node_id: cell.node.to_string(),
                    second: cell.second,
                    cell: cell.cell,
                }))
            }
        }
    }
    let _ = service;
    batch
}

fn core() -> (TelemetryService, telemetry_core::OutputReceiver, Arc<telemetry_core::ManualClock>) {
    let clock = Arc::new(telemetry_core::ManualClock::new(UnixMillis(1_700_000_000_000)));
    let (service, receiver) =
        TelemetryService::builder(CoreConfig { node_id: "sfu-1".into(), ..CoreConfig::default() })
            .clock(clock.clone())
            .build();
    (service, receiver, clock)
}

#[tokio::test]
async fn a_room_lifecycle_projects_rooms_participants_and_tracks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (service, receiver, clock) = core();
    let demo = room("RM_1", "demo");
    service.room_started(demo.clone());
    service.participant_joined(demo.clone(), participant("PA_a"), None, None, true, DEFAULT_GUARD);
    service.participant_active(demo.clone(), participant("PA_a"), None, false, DEFAULT_GUARD);
    service.participant_joined(demo.clone(), participant("PA_b"), None, None, true, DEFAULT_GUARD);
    let track = lk::TrackInfo {
        sid: "TR_1".into(),
        r#type: lk::TrackType::Video as i32,
        source: lk::TrackSource::Camera as i32,
        mime_type: "video/VP8".into(),
        ..Default::default()
    };
    service.track_published(demo.clone(), "PA_a", "PA_a-id", track.clone(), true);
    clock.advance_millis(1000);
    service.participant_left(demo.clone(), participant("PA_b"), true, DEFAULT_GUARD);
    service.track_unpublished(demo.clone(), "PA_a", "PA_a-id", track, true, true);
    service.participant_left(demo.clone(), participant("PA_a"), true, DEFAULT_GUARD);
    service.room_ended(demo);
    store.write(batch_from(&service, &receiver)).await.expect("write");

    let detail = store.room("RM_1").await.expect("room").expect("exists");
    assert_eq!(detail.room.name, "demo");
    assert!(detail.room.ended_at.is_some());
    assert_eq!((detail.room.num_participants, detail.room.num_tracks), (2, 1));
    let states: Vec<(&str, &str)> =
        detail.participants.iter().map(|p| (p.sid.as_str(), p.state.as_str())).collect();
    assert_eq!(states, vec![("PA_a", "left"), ("PA_b", "aborted")]);
    let a = &detail.participants[0];
    assert!(a.joined_at.is_some() && a.active_at.is_some() && a.left_at.is_some());
    assert_eq!(a.identity, "PA_a-id");
    let track = &detail.tracks[0];
    assert_eq!(
        (track.kind.as_str(), track.source.as_str(), track.mime_type.as_str()),
        ("VIDEO", "CAMERA", "video/VP8")
    );
    assert!(track.published_at.is_some() && track.unpublished_at.is_some());

    let events = store
        .room_events(EventsQuery { room_sid: "RM_1".into(), limit: 100, ..Default::default() })
        .await
        .expect("events");
    let types: Vec<&str> = events.items.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "ROOM_CREATED",
            "PARTICIPANT_JOINED",
            "PARTICIPANT_ACTIVE",
            "PARTICIPANT_JOINED",
            "TRACK_PUBLISHED",
            "PARTICIPANT_CONNECTION_ABORTED",
            "TRACK_UNPUBLISHED",
            "PARTICIPANT_LEFT",
            "ROOM_ENDED"
        ],
        "call order"
    );
    assert!(events.next.is_none());
}

#[tokio::test]
async fn events_are_stored_once_and_paged_in_call_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (service, receiver, _) = core();
    for index in 0..25 {
        service.track_muted(
            room("RM_1", "demo"),
            "PA_a",
            lk::TrackInfo { sid: format!("TR_{index}"), ..Default::default() },
        );
    }
    let batch = batch_from(&service, &receiver);
    store.write(batch.clone()).await.expect("write");
    store.write(batch).await.expect("the same events again");
    assert_eq!(store.counts().await.expect("counts").events, 25, "a repeated id is stored once");

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .room_events(EventsQuery {
                room_sid: "RM_1".into(),
                limit: 10,
                after,
                event_type: Some("TRACK_MUTED".into()),
            })
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|e| e.position));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let none = store
        .room_events(EventsQuery {
            room_sid: "RM_1".into(),
            limit: 10,
            after: None,
            event_type: Some("ROOM_ENDED".into()),
        })
        .await
        .expect("page");
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn rooms_are_listed_newest_first_with_cursor_filter_and_search() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (service, receiver, clock) = core();
    for index in 0..7 {
        clock.advance_millis(1000);
        service.room_started(room(&format!("RM_{index}"), &format!("room_{index}%")));
    }
    service.room_ended(room("RM_3", "room_3%"));
    store.write(batch_from(&service, &receiver)).await.expect("write");

    let first = store.rooms(RoomsQuery { limit: 3, ..Default::default() }).await.expect("rooms");
    let sids: Vec<&str> = first.items.iter().map(|r| r.sid.as_str()).collect();
    assert_eq!(sids, ["RM_6", "RM_5", "RM_4"]);
    let second = store
        .rooms(RoomsQuery { limit: 3, after: first.next, ..Default::default() })
        .await
        .expect("rooms");
    let sids: Vec<&str> = second.items.iter().map(|r| r.sid.as_str()).collect();
    assert_eq!(sids, ["RM_3", "RM_2", "RM_1"]);
    let third = store
        .rooms(RoomsQuery { limit: 3, after: second.next, ..Default::default() })
        .await
        .expect("rooms");
    assert_eq!(third.items.len(), 1);
    assert!(third.next.is_none());

    let ended = store
        .rooms(RoomsQuery { limit: 10, active: Some(false), ..Default::default() })
        .await
        .expect("rooms");
    assert_eq!(ended.items.iter().map(|r| r.sid.as_str()).collect::<Vec<_>>(), ["RM_3"]);
    let active = store
        .rooms(RoomsQuery { limit: 10, active: Some(true), ..Default::default() })
        .await
        .expect("rooms");
    assert_eq!(active.items.len(), 6);
    let search = store
        .rooms(RoomsQuery { limit: 10, name_contains: Some("m_5%".into()), ..Default::default() })
        .await
        .expect("rooms");
    assert_eq!(search.items.iter().map(|r| r.sid.as_str()).collect::<Vec<_>>(), ["RM_5"]);
    let literal = store
        .rooms(RoomsQuery { limit: 10, name_contains: Some("m_".into()), ..Default::default() })
        .await
        .expect("rooms");
    assert_eq!(literal.items.len(), 7);
    let wildcard = store
        .rooms(RoomsQuery { limit: 10, name_contains: Some("o_m".into()), ..Default::default() })
        .await
        .expect("rooms");
    assert!(wildcard.items.is_empty(), "`_` is matched literally, not as a wildcard (\"oom\")");
    let none = store
        .rooms(RoomsQuery { limit: 10, name_contains: Some("x%".into()), ..Default::default() })
        .await
        .expect("rooms");
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn stats_windows_and_node_rates_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (service, receiver, clock) = core();
    service.participant_joined(
        room("RM_1", "demo"),
        participant("PA_a"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    let key = StatsKey::for_data("", Direction::Upstream, "PA_a", "TR_DTPA_a");
    for _ in 0..3 {
        clock.advance_millis(5000);
        service
            .track_stats(
                "RM_1",
                "demo",
                &key,
                &lk::AnalyticsStat {
                    streams: vec![lk::AnalyticsStream {
                        primary_bytes: 625_000,
                        primary_packets: 500,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .expect("accepted");
    }
    service.flush_stats();
    service.drain_node_rates();
    store.write(batch_from(&service, &receiver)).await.expect("write");
    // The same cells again: rate cells add up.
    service
        .track_stats(
            "RM_1",
            "demo",
            &key,
            &lk::AnalyticsStat {
                streams: vec![lk::AnalyticsStream {
                    primary_bytes: 0,
                    primary_packets: 0,
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .expect("accepted");

    let windows = store
        .stats(StatsQuery { room_sid: Some("RM_1".into()), limit: 100, ..Default::default() })
        .await
        .expect("stats");
    assert_eq!(windows.len(), 1);
    let window = &windows[0];
    assert_eq!(
        (window.bytes, window.packets, window.samples, window.covered_ms),
        (1_875_000, 1500, 3, 15_000)
    );
    assert!((window.avg_bps - 1_000_000.0).abs() < 1e-6);
    assert_eq!(
        (window.direction.as_str(), window.kind.as_str(), window.node_id.as_str()),
        ("upstream", "data", "sfu-1")
    );
    let filtered = store
        .stats(StatsQuery {
            direction: Some("downstream".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("stats");
    assert!(filtered.is_empty());

    let start = UnixMillis(1_700_000_000_000);
    let cells = store.node_rates("sfu-1", start, start.plus_millis(15_000)).await.expect("rates");
    assert_eq!(cells.len(), 15);
    assert!(cells.iter().all(|(_, cell)| cell.bytes_in == 125_000));
    store
        .write(WriteBatch {
            rate_cells: vec![RateCellRecord {
                node_id: "sfu-1".into(),
                second: cells[0].0,
                cell: RateCell { bytes_in: 5, ..RateCell::default() },
            }],
            ..Default::default()
        })
        .await
        .expect("write");
    let cells = store.node_rates("sfu-1", start, start.plus_millis(1000)).await.expect("rates");
    assert_eq!(cells[0].1.bytes_in, 125_005, "cells add up");

    let nodes = store.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].node_id, "sfu-1");
}

#[tokio::test]
async fn the_latest_node_room_state_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let record = |sequence: u64, at: i64| NodeRoomsRecord {
        node_id: "sfu-1".into(),
        sequence,
        at: UnixMillis(at),
        payload: format!("{{\"sequenceNumber\":\"{sequence}\"}}"),
    };
    store
        .write(WriteBatch { node_rooms: vec![record(2, 2000)], ..Default::default() })
        .await
        .expect("write");
    store
        .write(WriteBatch { node_rooms: vec![record(1, 1000)], ..Default::default() })
        .await
        .expect("an older one");
    let nodes = store.nodes().await.expect("nodes");
    assert_eq!(nodes[0].rooms.as_ref().map(|r| r.sequence), Some(2));
    store
        .write(WriteBatch { node_rooms: vec![record(3, 3000)], ..Default::default() })
        .await
        .expect("a newer one");
    let nodes = store.nodes().await.expect("nodes");
    assert_eq!(nodes[0].rooms.as_ref().map(|r| r.sequence), Some(3));
    assert_eq!((nodes[0].first_seen, nodes[0].last_seen), (UnixMillis(1000), UnixMillis(3000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_durable_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..50 {
                let event = lk::AnalyticsEvent {
                    id: format!("AE_{writer}_{index}"),
                    r#type: lk::AnalyticsEventType::TrackMuted as i32,
                    room_id: "RM_1".into(),
                    ..Default::default()
                };
                store
                    .write(WriteBatch {
                        events: vec![EventRecord::from_event(&event)],
                        ..Default::default()
                    })
                    .await
                    .expect("write");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    assert_eq!(store.counts().await.expect("counts").events, 400);
    store.close();
    assert!(matches!(
        store
            .write(WriteBatch {
                events: vec![EventRecord::from_event(&lk::AnalyticsEvent {
                    id: "AE_late".into(),
                    ..Default::default()
                })],
                ..Default::default()
            })
            .await,
        Err(crate::StoreError::Closed)
    ));
    drop(store);
    let reopened = open(&dir);
    assert_eq!(
        reopened.counts().await.expect("counts").events,
        400,
        "nothing lost across a reopen"
    );
}

#[tokio::test]
async fn prune_removes_what_is_older_than_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (service, receiver, clock) = core();
    service.room_started(room("RM_old", "old"));
    service.room_ended(room("RM_old", "old"));
    clock.advance_millis(86_400_000);
    service.room_started(lk::Room { creation_time: 1_700_086_400, ..room("RM_new", "new") });
    store.write(batch_from(&service, &receiver)).await.expect("write");
    let pruned = store.prune(UnixMillis(1_700_000_000_000 + 3_600_000)).await.expect("prune");
    assert_eq!((pruned.events, pruned.rooms), (2, 1));
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.events, counts.rooms), (1, 1));
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let connection =
        rusqlite::Connection::open(dir.path().join("telemetry.sqlite3")).expect("open");
    connection.pragma_update(None, "user_version", 99).expect("pragma");
    drop(connection);
    let error = SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect_err("refused");
    assert!(error.to_string().contains("newer version"), "{error}");
}

// --- The webhook outbox ---

mod outbox {
    use super::*;
    use crate::model::{
        AttemptOutcome, AttemptRecord, DeliveriesQuery, EndpointRecord, OutboxCounts,
        OutgoingWebhook, ReplayQuery, WebhookMessage,
    };

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn endpoint(id: &str) -> EndpointRecord {
        EndpointRecord {
            id: id.to_owned(),
            url: format!("http://127.0.0.1:9/{id}"),
            signing: "livekit".to_owned(),
            api_key: "key".to_owned(),
            secret: "secret".to_owned(),
            include_events: Vec::new(),
            exclude_events: vec!["room_finished".to_owned()],
            enabled: true,
            source: "api".to_owned(),
            created_at: T0,
        }
    }

    fn webhook(id: &str, room: &str, at: UnixMillis, endpoints: &[&str]) -> OutgoingWebhook {
        OutgoingWebhook {
            message: WebhookMessage {
                id: id.to_owned(),
                event: "room_started".to_owned(),
                event_id: String::new(),
                resource_key: room.to_owned(),
                room_sid: format!("RM_{room}"),
                room_name: room.to_owned(),
                payload: format!("{{\"id\":\"{id}\"}}"),
                created_at: at,
            },
            endpoint_ids: endpoints.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    fn attempt(delivery_id: i64, attempt: u32, outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            delivery_id,
            attempt,
            started_at: T0.plus_millis(i64::from(attempt) * 1000),
            duration_ms: 12,
            status_code: Some(if outcome == AttemptOutcome::Delivered { 200 } else { 503 }),
            error: (outcome != AttemptOutcome::Delivered).then(|| "HTTP 503".to_owned()),
            outcome,
        }
    }

    async fn write(store: &SqliteStore, batch: WriteBatch) -> Vec<crate::model::PendingDelivery> {
        store.write(batch).await.expect("write").deliveries
    }

    async fn status_of(store: &SqliteStore, id: i64) -> (String, u32) {
        let (delivery, _) = store.delivery(id).await.expect("delivery").expect("exists");
        (delivery.status, delivery.attempts)
    }

    #[tokio::test]
    async fn webhooks_are_stored_once_with_a_delivery_per_endpoint_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        for id in ["WE_a", "WE_b"] {
            store.put_endpoint(endpoint(id)).await.expect("endpoint");
        }
        let batch = WriteBatch {
            webhooks: vec![
                webhook("EV_1", "r1", T0, &["WE_a", "WE_b"]),
                webhook("EV_2", "r2", T0.plus_millis(1), &["WE_b"]),
            ],
            ..WriteBatch::default()
        };
        let created = write(&store, batch.clone()).await;
        let shape: Vec<(&str, &str, &str)> = created
            .iter()
            .map(|d| (d.message_id.as_str(), d.endpoint_id.as_str(), d.resource_key.as_str()))
            .collect();
        assert_eq!(shape, [("EV_1", "WE_a", "r1"), ("EV_1", "WE_b", "r1"), ("EV_2", "WE_b", "r2")]);
        assert!(created.windows(2).all(|pair| pair[0].id < pair[1].id), "ids in production order");
        assert_eq!(created[0].payload, "{\"id\":\"EV_1\"}");
        // The same messages again (a retried write): nothing new.
        assert!(write(&store, batch).await.is_empty());
        assert_eq!(
            store.outbox_counts().await.expect("counts"),
            OutboxCounts { pending: 3, delivered: 0, dead: 0 }
        );
        store.close();
        let store = open(&dir);
        let pending = store.pending_deliveries().await.expect("pending");
        assert_eq!(pending, created, "pending deliveries survive a reopen, in id order");
        let endpoints = store.endpoints().await.expect("endpoints");
        assert_eq!(endpoints, [endpoint("WE_a"), endpoint("WE_b")]);
    }

    #[tokio::test]
    async fn attempts_move_a_delivery_to_delivered_or_dead_and_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
        let created = write(
            &store,
            WriteBatch {
                webhooks: vec![
                    webhook("EV_1", "r", T0, &["WE_a"]),
                    webhook("EV_2", "r", T0, &["WE_a"]),
                ],
                ..WriteBatch::default()
            },
        )
        .await;
        let (first, second) = (created[0].id, created[1].id);
        let retry_at = T0.plus_millis(5000);
        let attempts = vec![
            attempt(first, 1, AttemptOutcome::Retry(retry_at)),
            attempt(first, 2, AttemptOutcome::Delivered),
            attempt(second, 1, AttemptOutcome::Dead),
        ];
        // Recorded twice (a retried write): the same result.
        for _ in 0..2 {
            store
                .write(WriteBatch { attempts: attempts.clone(), ..WriteBatch::default() })
                .await
                .expect("write");
        }
        let (delivery, rows) = store.delivery(first).await.expect("delivery").expect("exists");
        assert_eq!((delivery.status.as_str(), delivery.attempts), ("delivered", 2));
        assert_eq!(delivery.last_status_code, Some(200));
        assert_eq!(delivery.delivered_at, Some(T0.plus_millis(2012)));
        let codes: Vec<Option<u16>> = rows.iter().map(|row| row.status_code).collect();
        assert_eq!(codes, [Some(503), Some(200)]);
        assert_eq!(status_of(&store, second).await, ("dead".to_owned(), 1));
        assert!(store.pending_deliveries().await.expect("pending").is_empty());
        assert_eq!(
            store.outbox_counts().await.expect("counts"),
            OutboxCounts { pending: 0, delivered: 1, dead: 1 }
        );

        // Listing: newest first, by status, paged.
        let dead = store
            .deliveries(DeliveriesQuery {
                status: Some("dead".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(dead.items.iter().map(|d| d.id).collect::<Vec<_>>(), [second]);
        let page = store
            .deliveries(DeliveriesQuery { limit: 1, ..Default::default() })
            .await
            .expect("list");
        assert_eq!((page.items[0].id, page.next), (second, Some(second)));
        let rest = store
            .deliveries(DeliveriesQuery { limit: 1, before: page.next, ..Default::default() })
            .await
            .expect("list");
        assert_eq!((rest.items[0].id, rest.next), (first, None));
    }

    #[tokio::test]
    async fn requeue_expedite_and_replay_make_deliveries_due_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
        let hooks = (0..4)
            .map(|i| webhook(&format!("EV_{i}"), "r", T0.plus_millis(i * 1000), &["WE_a"]))
            .collect();
        let created = write(&store, WriteBatch { webhooks: hooks, ..WriteBatch::default() }).await;
        let ids: Vec<i64> = created.iter().map(|d| d.id).collect();
        let attempts =
            ids.iter().map(|&id| attempt(id, 3, AttemptOutcome::Dead)).collect::<Vec<_>>();
        store.write(WriteBatch { attempts, ..WriteBatch::default() }).await.expect("write");

        let now = T0.plus_millis(60_000);
        // Requeue one: pending, due now, its schedule restarting after its 3 attempts.
        let requeued = store.requeue(ids[0], now).await.expect("requeue").expect("requeued");
        assert_eq!((requeued.next_attempt_at, requeued.attempts, requeued.retry_base), (now, 3, 3));
        assert_eq!(store.requeue(ids[0], now).await.expect("requeue"), None, "already pending");
        assert_eq!(store.requeue(999, now).await.expect("requeue"), None, "no such delivery");
        // Expedite a pending one; a dead one is not expedited.
        let later = now.plus_millis(1);
        assert_eq!(
            store.expedite(ids[0], later).await.expect("expedite").map(|d| d.next_attempt_at),
            Some(later)
        );
        assert_eq!(store.expedite(ids[1], later).await.expect("expedite"), None);
        // Replay the dead ones produced in [1 s, 3 s): ids[1] and ids[2], in order.
        let replayed = store
            .replay(
                ReplayQuery {
                    endpoint_id: "WE_a".into(),
                    since: T0.plus_millis(1000),
                    until: T0.plus_millis(3000),
                    status: "dead".into(),
                },
                now,
            )
            .await
            .expect("replay");
        assert_eq!(replayed.iter().map(|d| d.id).collect::<Vec<_>>(), &ids[1..3]);
        assert_eq!(
            store.outbox_counts().await.expect("counts"),
            OutboxCounts { pending: 3, delivered: 0, dead: 1 }
        );
    }

    #[tokio::test]
    async fn a_deleted_endpoint_leaves_its_deliveries_dead_and_not_requeueable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
        let created = write(
            &store,
            WriteBatch {
                webhooks: vec![webhook("EV_1", "r", T0, &["WE_a"])],
                ..WriteBatch::default()
            },
        )
        .await;
        let id = created[0].id;
        let deleted = store.delete_endpoint("WE_a", T0).await.expect("delete");
        assert_eq!(deleted.map(|e| e.id), Some("WE_a".to_owned()));
        assert_eq!(store.delete_endpoint("WE_a", T0).await.expect("delete"), None);
        assert_eq!(status_of(&store, id).await.0, "dead");
        // An attempt in flight when it was deleted does not bring it back.
        store
            .write(WriteBatch {
                attempts: vec![attempt(id, 1, AttemptOutcome::Retry(T0))],
                ..WriteBatch::default()
            })
            .await
            .expect("write");
        assert_eq!(status_of(&store, id).await.0, "dead");
        assert_eq!(store.requeue(id, T0).await.expect("requeue"), None, "no endpoint to send to");
        assert!(store.pending_deliveries().await.expect("pending").is_empty());
    }

    #[tokio::test]
    async fn prune_removes_finished_deliveries_but_never_pending_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
        let created = write(
            &store,
            WriteBatch {
                webhooks: vec![
                    webhook("EV_1", "r", T0, &["WE_a"]),
                    webhook("EV_2", "r", T0, &["WE_a"]),
                ],
                ..WriteBatch::default()
            },
        )
        .await;
        store
            .write(WriteBatch {
                attempts: vec![attempt(created[0].id, 1, AttemptOutcome::Delivered)],
                ..WriteBatch::default()
            })
            .await
            .expect("write");
        let pruned = store.prune(T0.plus_millis(86_400_000)).await.expect("prune");
        assert_eq!(pruned.deliveries, 1);
        let pending = store.pending_deliveries().await.expect("pending");
        assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), [created[1].id]);
        assert_eq!(pending[0].payload, "{\"id\":\"EV_2\"}", "a pending delivery keeps its message");
        assert_eq!(store.delivery(created[0].id).await.expect("delivery"), None);
    }
}
