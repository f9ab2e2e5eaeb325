//! The backend conformance suite: what every backend of the store contract must do, written once
//! against `dyn Store` and run by each backend's tests through [`conformance_tests!`] with a
//! [`Harness`] that gives it fresh databases.
//!
//! It covers the analytics projections and their merge rules, idempotent writes (records by key,
//! whole writes by their writer's mark), the open rooms, paging, stats and rate cells, node
//! states, durability across a reopen, pruning, the outbox's states and
//! requeue rules, the claim protocol (queue heads only, fencing, lease take-over, two claimants
//! racing), configured endpoint listings across instances, and the wake-up.

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use telemetry_core::proto as lk;
use telemetry_core::rates::RateCell;
use telemetry_core::{
    CoreConfig, DEFAULT_GUARD, Direction, Output, RenderedWebhook, StatsKey, TelemetryService,
    UnixMillis, WebhookSubject,
};

use crate::Store;
use crate::model::{
    AdapterStateRecord, AttemptOutcome, AttemptRecord, ClaimRequest, ClaimToken, ClaimedDelivery,
    ConfiguredEndpoints, DeliveriesQuery, DeliveryStatus, EndpointRecord, EndpointSource,
    EventRecord, EventsQuery, IssueRecord, IssuesQuery, NodeRoomsRecord, OpenRoomRecord,
    OutboxCounts, OutgoingWebhook, ParticipantState, QualityRecord, RateCellRecord, ReplayQuery,
    RoomsQuery, Signing, StatsQuery, StatsWindowRecord, WebhookMessage, WorkerRecord, WriteBatch,
    WriteMark,
};

/// Gives the suite databases.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, empty database.
    async fn database(&self) -> Box<dyn Database>;
}

/// One database, opened as often as a test needs (each open sees what earlier ones committed).
#[async_trait]
pub trait Database: Send + Sync {
    /// Opens (and migrates) a store on this database.
    async fn open(&self) -> Arc<dyn Store>;
}

/// Runs every test of the suite as a `#[tokio::test]` against `$harness` (an expression that
/// makes a [`Harness`]).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@tests $harness;
            a_room_lifecycle_projects_rooms_participants_and_tracks,
            projections_merge_what_arrives_out_of_order,
            events_are_stored_once_and_paged_in_call_order,
            events_are_stored_once_per_key_whatever_their_ids,
            a_marked_write_applied_again_writes_nothing_twice,
            rooms_are_listed_newest_first_with_cursor_filter_and_search,
            stats_windows_and_node_rates_round_trip,
            counters_beyond_i64_saturate,
            issues_merge_by_their_rule_filter_and_survive_a_reopen,
            the_latest_node_room_state_wins,
            live_workers_keep_the_last_open_state_and_survive_a_reopen,
            open_rooms_are_the_rooms_started_and_not_ended,
            closed_workers_are_kept_until_their_reap_and_survive_a_reopen,
            quality_states_are_kept_with_their_worker_until_replaced_or_reaped,
            adapter_states_keep_the_newest_generation_and_survive_a_reopen,
            concurrent_writes_are_all_durable_and_survive_a_reopen,
            prune_removes_what_is_older_than_the_retention,
            webhooks_are_stored_once_with_a_delivery_per_endpoint_and_survive_a_reopen,
            webhook_messages_are_stored_once_per_key_whatever_their_ids,
            attempts_move_a_delivery_to_delivered_or_dead_and_are_kept,
            requeue_expedite_and_replay_make_deliveries_due_again,
            a_deleted_endpoint_leaves_its_deliveries_dead_and_not_requeueable,
            prune_removes_finished_deliveries_but_never_pending_ones,
            claims_hand_out_due_queue_heads_once,
            a_stale_claim_records_nothing_and_an_expired_one_is_taken_over,
            released_claims_can_be_claimed_at_once,
            a_requeued_delivery_waits_for_the_request_in_flight_on_its_key,
            a_queue_is_claimed_with_its_run_and_released_claims_are_fenced,
            two_claimants_keep_one_request_in_flight_per_key_in_order,
            writes_that_create_deliveries_wake_dispatchers,
            configured_endpoints_are_deleted_only_when_no_live_instance_lists_them,
            a_closed_store_refuses_calls,
        );
    };
    (@tests $harness:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name(&$harness).await;
            }
        )*
    };
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
fn batch_from(receiver: &telemetry_core::OutputReceiver) -> WriteBatch {
    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
    let mut batch = WriteBatch::default();
    for output in outputs {
        match output.output {
            Output::Call(call) => batch
                .events
                .extend(call.event.map(|event| EventRecord::from_event(&event.decode()))),
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
            Output::Worker(state) => batch.workers.push(WorkerRecord::from_state(&state)),
            Output::QualityState(state) => batch.quality.push(QualityRecord::from_state(&state)),
            Output::Quality(change) => {
                batch.events.push(EventRecord::from_quality(&change));
                batch.issues.push(IssueRecord::from_issue(&change.issue));
            }
        }
    }
    batch
}

/// The types of a room's first 100 events, in call order, and the next page's cursor.
async fn event_types(store: &dyn Store, room_sid: &str) -> (Vec<String>, Option<i64>) {
    let events = store
        .room_events(EventsQuery { room_sid: room_sid.into(), limit: 100, ..Default::default() })
        .await
        .expect("events");
    (events.items.into_iter().map(|event| event.event_type).collect(), events.next)
}

fn core() -> (TelemetryService, telemetry_core::OutputReceiver, Arc<telemetry_core::ManualClock>) {
    let clock = Arc::new(telemetry_core::ManualClock::new(UnixMillis(1_700_000_000_000)));
    let (service, receiver) =
        TelemetryService::builder(CoreConfig { node_id: "sfu-1".into(), ..CoreConfig::default() })
            .clock(clock.clone())
            .build();
    (service, receiver, clock)
}

pub async fn a_room_lifecycle_projects_rooms_participants_and_tracks(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
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
    store.write(batch_from(&receiver)).await.expect("write");

    let detail = store.room("RM_1").await.expect("room").expect("exists");
    assert_eq!(detail.room.name, "demo");
    assert!(detail.room.ended_at.is_some());
    assert_eq!((detail.room.num_participants, detail.room.num_tracks), (2, 1));
    let states: Vec<(&str, &str)> =
        detail.participants.iter().map(|p| (p.sid.as_str(), p.state.as_str())).collect();
    assert_eq!(detail.participants[0].state, ParticipantState::Left);
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

    let (types, next) = event_types(store.as_ref(), "RM_1").await;
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
    assert!(next.is_none());
}

/// Events that arrive out of order (a LiveKit node's stream, a replay) merge by the rules of
/// [`crate::model::Projection`]: a room keeps its earliest start and its first name, a participant
/// its earliest join and activation, a track its earliest publication.
pub async fn projections_merge_what_arrives_out_of_order(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let event = |id: &str, kind: lk::AnalyticsEventType, at_secs: i64, name: &str| {
        let mut event = lk::AnalyticsEvent {
            id: id.into(),
            r#type: kind as i32,
            timestamp: Some(UnixMillis::from_secs(at_secs).to_timestamp()),
            room_id: "RM_m".into(),
            room: Some(lk::Room { sid: "RM_m".into(), name: name.into(), ..Default::default() }),
            ..Default::default()
        };
        if name.is_empty() {
            event.room = None;
        }
        event
    };
    let participant_event =
        |id: &str, kind: lk::AnalyticsEventType, at_secs: i64| lk::AnalyticsEvent {
            participant_id: "PA_m".into(),
            participant: Some(lk::ParticipantInfo {
                sid: "PA_m".into(),
                identity: "m-identity".into(),
                ..Default::default()
            }),
            ..event(id, kind, at_secs, "")
        };
    use lk::AnalyticsEventType as T;
    let events = [
        participant_event("AE_active_late", T::ParticipantActive, 1_700_000_030),
        event("AE_unnamed", T::TrackMuted, 1_700_000_020, ""),
        participant_event("AE_active", T::ParticipantActive, 1_700_000_012),
        event("AE_start", T::RoomCreated, 1_700_000_010, "first-name"),
        participant_event("AE_join", T::ParticipantJoined, 1_700_000_011),
        event("AE_renamed", T::TrackMuted, 1_700_000_040, "second-name"),
    ];
    for event in &events {
        store
            .write(WriteBatch {
                events: vec![EventRecord::from_event(event)],
                ..Default::default()
            })
            .await
            .expect("write");
    }
    let detail = store.room("RM_m").await.expect("room").expect("exists");
    assert_eq!(detail.room.name, "first-name", "a name, once known, stays");
    assert_eq!(detail.room.started_at, UnixMillis::from_secs(1_700_000_010), "the earliest start");
    assert_eq!(detail.room.ended_at, None);
    let participant = &detail.participants[0];
    assert_eq!(participant.identity, "m-identity");
    assert_eq!(participant.joined_at, Some(UnixMillis::from_secs(1_700_000_011)));
    assert_eq!(
        participant.active_at,
        Some(UnixMillis::from_secs(1_700_000_012)),
        "the earliest activation"
    );
    assert_eq!(participant.state, ParticipantState::Active);
    assert!(participant.state.is_present());
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.rooms, counts.active_rooms, counts.active_participants), (1, 1, 1));
}

/// Issues: a start then its end is one closed row; a start applied again never reopens it; a
/// start and end in one write is the closed row; the filters of `GET /v1/issues` select by
/// openness, room, kind and overlap with `[from, to)`; all of it survives a reopen, and every
/// open issue is listed whole under the largest limit (what a restart restores).
pub async fn issues_merge_by_their_rule_filter_and_survive_a_reopen(harness: &dyn Harness) {
    use telemetry_core::quality::IssueKind;
    let database = harness.database().await;
    let store = database.open().await;
    let issue =
        |id: &str, room: &str, kind: IssueKind, start_s: i64, end_s: Option<i64>| IssueRecord {
            id: id.into(),
            room_sid: room.into(),
            room_name: format!("{room}-name"),
            participant_sid: "PA_pub".into(),
            participant_identity: "pub".into(),
            track_sid: "TR_a".into(),
            direction: Direction::Upstream,
            kind,
            value: 7.5,
            threshold: 5.0,
            started_at: T0.plus_millis(start_s * 1000),
            ended_at: end_s.map(|end_s| T0.plus_millis(end_s * 1000)),
            affected: if end_s.is_some() { vec!["PA_s1".into(), "PA_s2".into()] } else { vec![] },
        };
    let write = |issues: Vec<IssueRecord>| {
        let store = store.clone();
        async move { store.write(WriteBatch { issues, ..Default::default() }).await.expect("write") }
    };
    let loss_open = issue("QI_loss", "RM_a", IssueKind::PacketLoss, 10, None);
    let loss_closed = IssueRecord {
        value: 12.0,
        ..issue("QI_loss", "RM_a", IssueKind::PacketLoss, 10, Some(70))
    };
    write(vec![loss_open.clone()]).await;
    write(vec![loss_closed.clone()]).await;
    write(vec![loss_open.clone()]).await;
    let jitter_closed = issue("QI_jit", "RM_a", IssueKind::Jitter, 100, Some(130));
    write(vec![issue("QI_jit", "RM_a", IssueKind::Jitter, 100, None), jitter_closed.clone()]).await;
    let rtt_open = IssueRecord {
        affected: vec!["PA_s3".into()],
        ..issue("QI_rtt", "RM_b", IssueKind::Rtt, 200, None)
    };
    write(vec![rtt_open.clone()]).await;
    let all = IssuesQuery { limit: 100, ..Default::default() };
    let list = |query: IssuesQuery| {
        let store = store.clone();
        async move {
            store.issues(query).await.expect("issues").into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        store.issues(all.clone()).await.expect("issues"),
        [loss_closed.clone(), jitter_closed.clone(), rtt_open.clone()]
    );
    assert_eq!(list(IssuesQuery { open: Some(true), ..all.clone() }).await, ["QI_rtt"]);
    assert_eq!(list(IssuesQuery { open: Some(false), ..all.clone() }).await, ["QI_loss", "QI_jit"]);
    assert_eq!(
        list(IssuesQuery { room_sid: Some("RM_b".into()), ..all.clone() }).await,
        ["QI_rtt"]
    );
    assert_eq!(
        list(IssuesQuery { kind: Some(IssueKind::Jitter), ..all.clone() }).await,
        ["QI_jit"]
    );
    // Overlap with [80 s, 150 s): the loss issue ended at 70 s, the RTT one starts at 200 s.
    let window = IssuesQuery {
        from: Some(T0.plus_millis(80_000)),
        to: Some(T0.plus_millis(150_000)),
        ..all.clone()
    };
    assert_eq!(list(window).await, ["QI_jit"]);
    assert_eq!(
        list(IssuesQuery { from: Some(T0.plus_millis(1_000_000)), ..all.clone() }).await,
        ["QI_rtt"]
    );
    assert_eq!(list(IssuesQuery { limit: 1, ..all.clone() }).await, ["QI_loss"]);
    drop(store);
    let reopened = database.open().await;
    assert_eq!(
        reopened.issues(all).await.expect("issues"),
        [loss_closed, jitter_closed, rtt_open.clone()]
    );
    // What a restart or a take-over restores: every open issue, whole (`affected` included),
    // with the largest limit.
    let open = IssuesQuery { open: Some(true), limit: u32::MAX, ..Default::default() };
    assert_eq!(reopened.issues(open).await.expect("open issues"), [rtt_open]);
}

/// Counters beyond what a signed 64-bit column holds are stored saturated, never wrapped, and so
/// are node rate cells added up beyond it.
pub async fn counters_beyond_i64_saturate(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let window = StatsWindowRecord {
        id: "AS_big".into(),
        room_sid: "RM_big".into(),
        room_name: "big".into(),
        participant_sid: "PA_big".into(),
        participant_identity: String::new(),
        track_sid: "TR_big".into(),
        direction: Direction::Downstream,
        kind: telemetry_core::StreamKind::Media,
        mime: "video/VP8".into(),
        node_id: "sfu-big".into(),
        start: T0,
        end: T0.plus_millis(1000),
        flushed_at: T0.plus_millis(1000),
        covered_ms: 1000,
        bytes: u64::MAX,
        packets: i64::MAX as u64 + 1,
        packets_lost: 7,
        avg_bps: 1.5e18,
        peak_bps: 2.5e18,
        resolution_ms: 1000,
        jitter_max: u32::MAX,
        rtt_max: 12,
        score: 4.5,
        min_score: 1.0,
        median_score: 4.0,
        nacks: 1,
        plis: 2,
        firs: 3,
        frames: 4,
        samples: u32::MAX,
        invalid_samples: 1,
        mos: Some(3.75),
    };
    store
        .write(WriteBatch { stats: vec![window.clone()], ..Default::default() })
        .await
        .expect("write");
    let stored = store
        .stats(StatsQuery { track_sid: Some("TR_big".into()), limit: 10, ..Default::default() })
        .await
        .expect("stats");
    let expected = StatsWindowRecord { bytes: i64::MAX as u64, packets: i64::MAX as u64, ..window };
    assert_eq!(stored, [expected]);
    // A cell, then the same second again in another write: the sum saturates too.
    let big = RateCell { bytes_in: u64::MAX, packets_out: i64::MAX as u64, ..RateCell::default() };
    for _ in 0..2 {
        store
            .write(WriteBatch {
                rate_cells: vec![RateCellRecord {
                    node_id: "sfu-big".into(),
                    second: T0.as_secs(),
                    cell: big,
                }],
                ..Default::default()
            })
            .await
            .expect("write");
        let cells = store.node_rates("sfu-big", T0, T0.plus_millis(1000)).await.expect("rates");
        assert_eq!(cells[0].1.bytes_in, i64::MAX as u64);
        assert_eq!(cells[0].1.packets_out, i64::MAX as u64);
    }
}

pub async fn events_are_stored_once_and_paged_in_call_order(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let (service, receiver, _) = core();
    for index in 0..25 {
        service.track_muted(
            room("RM_1", "demo"),
            "PA_a",
            lk::TrackInfo { sid: format!("TR_{index}"), ..Default::default() },
        );
    }
    let batch = batch_from(&receiver);
    store.write(batch.clone()).await.expect("write");
    store.write(batch).await.expect("the same events again");
    assert_eq!(store.counts().await.expect("counts").events, 25, "a repeated key is stored once");

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

/// An event is one per key (`EventRecord::key`), not per id: events that share an id under
/// distinct keys (two random ids that collide) are both stored and both project; an event whose
/// key is stored already (a retried write, a replay) is ignored with its projections, whatever
/// its id; keys of one maker (`EventRecord::drawn_key`) and of a log (`origin_key`) increase.
pub async fn events_are_stored_once_per_key_whatever_their_ids(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let (service, receiver, clock) = core();
    let keys = room("RM_k", "keys");
    service.room_started(keys.clone());
    service.participant_joined(keys.clone(), participant("PA_a"), None, None, true, DEFAULT_GUARD);
    service.participant_joined(keys.clone(), participant("PA_b"), None, None, true, DEFAULT_GUARD);
    let mut batch = batch_from(&receiver);
    assert_eq!(batch.events.len(), 3);
    // The two joins share an id under keys of their own.
    batch.events[2].id = batch.events[1].id.clone();
    for (sequence, event) in batch.events.iter_mut().enumerate() {
        event.key = EventRecord::drawn_key(7, sequence as u64 + 1);
    }
    store.write(batch.clone()).await.expect("write");
    let detail = store.room("RM_k").await.expect("room").expect("exists");
    assert_eq!(detail.participants.len(), 2, "both joins projected: {detail:?}");
    assert_eq!(store.counts().await.expect("counts").events, 3, "both joins stored");

    // PA_a leaves (before it was active: an abort); the same departure written again under
    // another id, and a departure of PA_b under PA_a's departure's key, are ignored.
    clock.advance_millis(1000);
    service.participant_left(keys.clone(), participant("PA_a"), true, DEFAULT_GUARD);
    service.participant_left(keys, participant("PA_b"), true, DEFAULT_GUARD);
    let mut leaves = batch_from(&receiver);
    leaves.events[0].key = EventRecord::drawn_key(7, 10);
    leaves.events[1].key = EventRecord::drawn_key(7, 10);
    store.write(leaves.clone()).await.expect("write the leaves");
    let mut again = leaves.clone();
    again.events.truncate(1);
    again.events[0].id = "AE_another1234".into();
    store.write(again).await.expect("a retried write");
    let detail = store.room("RM_k").await.expect("room").expect("exists");
    let states: Vec<(&str, &str)> =
        detail.participants.iter().map(|p| (p.sid.as_str(), p.state.as_str())).collect();
    assert_eq!(states, vec![("PA_a", "aborted"), ("PA_b", "joined")], "one departure projected");
    let (types, _) = event_types(store.as_ref(), "RM_k").await;
    assert_eq!(
        types,
        [
            "ROOM_CREATED",
            "PARTICIPANT_JOINED",
            "PARTICIPANT_JOINED",
            "PARTICIPANT_CONNECTION_ABORTED"
        ],
        "each key once"
    );

    // The keys sort as they are made, by text, as both backends' indexes compare them.
    let drawn: Vec<String> = [1, 2, 15, 16, 255, 1 << 40]
        .into_iter()
        .map(|seq| EventRecord::drawn_key(7, seq))
        .collect();
    assert!(drawn.windows(2).all(|pair| pair[0] < pair[1]), "{drawn:?}");
    let origins: Vec<String> = [(1, 0), (1, 9), (2, 0), (16, 3), (1 << 40, 0)]
        .into_iter()
        .map(|(sequence, index)| {
            EventRecord::origin_key(telemetry_core::Origin { sequence, index })
        })
        .collect();
    assert!(origins.windows(2).all(|pair| pair[0] < pair[1]), "{origins:?}");
    assert_ne!(EventRecord::drawn_key(7, 1), EventRecord::drawn_key(8, 1), "makers differ");
}

pub async fn rooms_are_listed_newest_first_with_cursor_filter_and_search(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let (service, receiver, clock) = core();
    for index in 0..7 {
        clock.advance_millis(1000);
        service.room_started(room(&format!("RM_{index}"), &format!("room_{index}%")));
    }
    service.room_ended(room("RM_3", "room_3%"));
    store.write(batch_from(&receiver)).await.expect("write");

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

pub async fn stats_windows_and_node_rates_round_trip(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
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
    store.write(batch_from(&receiver)).await.expect("write");
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
            direction: Some(Direction::Downstream),
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

/// The rooms a service restores for `livekit_room_total`: started (a `ROOM_CREATED` event) and
/// not ended, each with its name, its start and the node of its `ROOM_CREATED` event; a room
/// that ended, or was only seen through other calls, is not one. They survive a reopen.
pub async fn open_rooms_are_the_rooms_started_and_not_ended(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let (service, receiver, clock) = core();
    service.room_started(room("RM_open", "open"));
    service.room_started(room("RM_done", "done"));
    let seen = room("RM_seen", "seen");
    service.participant_joined(seen, participant("PA_a"), None, None, true, DEFAULT_GUARD);
    clock.advance_millis(1000);
    service.room_ended(room("RM_done", "done"));
    let mut batch = batch_from(&receiver);
    // Started on another node.
    batch.events.push(EventRecord::from_event(&lk::AnalyticsEvent {
        id: "AE_other".into(),
        r#type: lk::AnalyticsEventType::RoomCreated as i32,
        timestamp: Some(UnixMillis(1_700_000_100_000).to_timestamp()),
        room: Some(room("RM_other", "other")),
        node_id: "sfu-2".into(),
        ..Default::default()
    }));
    store.write(batch).await.expect("write");
    let expected = vec![
        OpenRoomRecord {
            sid: "RM_open".into(),
            name: "open".into(),
            node_id: "sfu-1".into(),
            started_at: UnixMillis(1_700_000_000_000),
        },
        OpenRoomRecord {
            sid: "RM_other".into(),
            name: "other".into(),
            node_id: "sfu-2".into(),
            started_at: UnixMillis(1_700_000_100_000),
        },
    ];
    assert_eq!(store.open_rooms().await.expect("open rooms"), expected);
    let store = database.open().await;
    assert_eq!(store.open_rooms().await.expect("after a reopen"), expected);
}

/// Stats workers' states: the last one written of each worker wins, within a batch and across
/// batches written concurrently (the writer may group them); a reaped state removes the worker;
/// what is kept survives a reopen.
pub async fn live_workers_keep_the_last_open_state_and_survive_a_reopen(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let state = |participant: &str, guards: &[&str], connected: bool, open: bool| WorkerRecord {
        room_id: "RM_1".into(),
        participant_id: participant.into(),
        room_name: "room \"one\"".into(),
        identity: format!("{participant}-identity"),
        node_id: "sfu-1".into(),
        created_at: UnixMillis(1_700_000_000_000),
        connected,
        guards: guards.iter().map(|guard| (*guard).to_owned()).collect(),
        open,
        // Here a state that is not open is the worker's reap.
        closed_at: (!open).then_some(UnixMillis(1_700_000_001_000)),
        reaped: !open,
    };
    let batch = |workers: Vec<WorkerRecord>| WriteBatch { workers, ..Default::default() };
    // In one batch: PA_1 joins, takes a second guard, connects; PA_2 joins and is reaped; PA_3
    // joins.
    store
        .write(batch(vec![
            state("PA_1", &["default"], false, true),
            state("PA_2", &["default"], false, true),
            state("PA_1", &["default", "media,\"x\""], false, true),
            state("PA_2", &[], false, false),
            state("PA_1", &["default", "media,\"x\""], true, true),
            state("PA_3", &["default"], false, true),
        ]))
        .await
        .expect("write");
    let live = store.live_workers().await.expect("live workers");
    assert_eq!(
        live,
        vec![
            state("PA_1", &["default", "media,\"x\""], true, true),
            state("PA_3", &["default"], false, true)
        ]
    );
    // Later writes: PA_3 leaves, then PA_4 joins and leaves, PA_5 joins.
    let writes = vec![
        batch(vec![state("PA_3", &[], false, false)]),
        batch(vec![state("PA_4", &["default"], false, true)]),
        batch(vec![state("PA_4", &[], false, false), state("PA_5", &["g"], true, true)]),
    ];
    for write in writes {
        store.write(write).await.expect("write");
    }
    // Removing a worker that is not kept changes nothing.
    store.write(batch(vec![state("PA_9", &[], false, false)])).await.expect("write");
    drop(store);
    let store = database.open().await;
    let live = store.live_workers().await.expect("live workers");
    assert_eq!(
        live,
        vec![
            state("PA_1", &["default", "media,\"x\""], true, true),
            state("PA_5", &["g"], true, true)
        ]
    );
}

/// A closed worker's state is kept, closed with its closed time, until its reap removes it; a
/// worker reopened under the same key (a rejoin) replaces it; what is kept survives a reopen.
pub async fn closed_workers_are_kept_until_their_reap_and_survive_a_reopen(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let record = |participant: &str, closed_at: Option<i64>, reaped: bool| WorkerRecord {
        room_id: "RM_1".into(),
        participant_id: participant.into(),
        room_name: "room".into(),
        identity: participant.into(),
        node_id: "sfu-1".into(),
        created_at: UnixMillis(1_700_000_000_000),
        connected: true,
        guards: if closed_at.is_none() { vec!["default".into()] } else { Vec::new() },
        open: closed_at.is_none(),
        closed_at: closed_at.map(UnixMillis),
        reaped,
    };
    let batch = |workers: Vec<WorkerRecord>| WriteBatch { workers, ..Default::default() };
    // PA_1 and PA_2 join and leave; PA_3 joins.
    store
        .write(batch(vec![
            record("PA_1", None, false),
            record("PA_2", None, false),
            record("PA_3", None, false),
            record("PA_1", Some(1_700_000_005_000), false),
        ]))
        .await
        .expect("write");
    store.write(batch(vec![record("PA_2", Some(1_700_000_006_000), false)])).await.expect("write");
    let live = store.live_workers().await.expect("live workers");
    assert_eq!(
        live,
        vec![
            record("PA_1", Some(1_700_000_005_000), false),
            record("PA_2", Some(1_700_000_006_000), false),
            record("PA_3", None, false),
        ]
    );
    // PA_1 is reaped; PA_2 rejoins before its reap (a new open worker under its key).
    store
        .write(batch(vec![
            record("PA_1", Some(1_700_000_005_000), true),
            record("PA_2", None, false),
        ]))
        .await
        .expect("write");
    drop(store);
    let store = database.open().await;
    let live = store.live_workers().await.expect("live workers");
    assert_eq!(live, vec![record("PA_2", None, false), record("PA_3", None, false)]);
    // A closed state then its reap in one batch leave nothing.
    store
        .write(batch(vec![
            record("PA_3", Some(1_700_000_007_000), false),
            record("PA_3", Some(1_700_000_007_000), true),
        ]))
        .await
        .expect("write");
    let live = store.live_workers().await.expect("live workers");
    assert_eq!(live, vec![record("PA_2", None, false)]);
}

/// A worker's quality detector states are kept with its record: the last one written of each
/// worker, after the workers of the same batch; an empty one is kept as empty; a state of
/// another worker under the same key (another creation time) is not kept; a rejoin's record
/// clears it; a reap removes it with the record; only open workers' are listed; what is kept
/// survives a reopen, JSON text and all.
pub async fn quality_states_are_kept_with_their_worker_until_replaced_or_reaped(
    harness: &dyn Harness,
) {
    use telemetry_core::Direction;
    use telemetry_core::quality::{DetectorState, IssueKind, TrackQualityState};
    let database = harness.database().await;
    let store = database.open().await;
    const CREATED: i64 = 1_700_000_000_000;
    let worker =
        |participant: &str, created_at: i64, closed_at: Option<i64>, reaped: bool| WorkerRecord {
            room_id: "RM_1".into(),
            participant_id: participant.into(),
            room_name: "room".into(),
            identity: participant.into(),
            node_id: "sfu-1".into(),
            created_at: UnixMillis(created_at),
            connected: true,
            guards: if closed_at.is_none() { vec!["default".into()] } else { Vec::new() },
            open: closed_at.is_none(),
            closed_at: closed_at.map(UnixMillis),
            reaped,
        };
    let quality = |participant: &str, created_at: i64, bad_since: Option<i64>| QualityRecord {
        room_id: "RM_1".into(),
        participant_id: participant.into(),
        room_name: "room".into(),
        created_at: UnixMillis(created_at),
        tracks: bad_since
            .map(|bad_since| {
                vec![TrackQualityState {
                    direction: Direction::Upstream,
                    track_id: "TR_\"é".into(),
                    muted: false,
                    quiet_from: Some(CREATED),
                    cadence_ms: 5000,
                    detectors: vec![DetectorState {
                        kind: IssueKind::PacketLoss,
                        bad_since,
                        clean_since: None,
                        worst: 12.5,
                        open: false,
                    }],
                    affected: vec!["PA_2".into()],
                }]
            })
            .unwrap_or_default(),
    };
    let batch = |workers: Vec<WorkerRecord>, quality: Vec<QualityRecord>| WriteBatch {
        workers,
        quality,
        ..Default::default()
    };
    // PA_1..PA_4 join in the batch that writes their states; PA_1's second state wins; PA_3's
    // is another worker's.
    store
        .write(batch(
            vec![
                worker("PA_1", CREATED, None, false),
                worker("PA_2", CREATED, None, false),
                worker("PA_3", CREATED, None, false),
                worker("PA_4", CREATED, None, false),
            ],
            vec![
                quality("PA_1", CREATED, Some(CREATED)),
                quality("PA_2", CREATED, Some(CREATED + 1)),
                quality("PA_3", CREATED + 1, Some(CREATED)),
                quality("PA_4", CREATED, Some(CREATED)),
                quality("PA_1", CREATED, Some(CREATED + 2)),
                quality("PA_5", CREATED, Some(CREATED)),
            ],
        ))
        .await
        .expect("write");
    assert_eq!(
        store.quality_states().await.expect("quality states"),
        vec![
            quality("PA_1", CREATED, Some(CREATED + 2)),
            quality("PA_2", CREATED, Some(CREATED + 1)),
            quality("PA_4", CREATED, Some(CREATED)),
        ]
    );
    // PA_1's empty now; PA_2 rejoins (a new worker); PA_4's record is written again (same
    // worker) without touching the state.
    store
        .write(batch(
            vec![worker("PA_2", CREATED + 10, None, false), worker("PA_4", CREATED, None, false)],
            vec![quality("PA_1", CREATED, None)],
        ))
        .await
        .expect("write");
    drop(store);
    let store = database.open().await;
    assert_eq!(
        store.quality_states().await.expect("quality states"),
        vec![quality("PA_1", CREATED, None), quality("PA_4", CREATED, Some(CREATED))]
    );
    // PA_1 and PA_4 close: kept, closed, not listed.
    store
        .write(batch(
            vec![
                worker("PA_1", CREATED, Some(CREATED + 20), false),
                worker("PA_4", CREATED, Some(CREATED + 20), false),
            ],
            Vec::new(),
        ))
        .await
        .expect("write");
    assert!(store.quality_states().await.expect("quality states").is_empty(), "closed");
    // The reap removes the record and its state: a worker made again with the same creation
    // time starts without one.
    store
        .write(batch(vec![worker("PA_4", CREATED, Some(CREATED + 20), true)], Vec::new()))
        .await
        .expect("write");
    store
        .write(batch(vec![worker("PA_4", CREATED, None, false)], Vec::new()))
        .await
        .expect("write");
    assert!(store.quality_states().await.expect("quality states").is_empty(), "reaped");
}

/// Ingest adapters' states: a state replaces the kept one of its adapter and key only with a
/// higher generation (writes that overtake each other leave the newest); kept per adapter;
/// what is kept survives a reopen.
pub async fn adapter_states_keep_the_newest_generation_and_survive_a_reopen(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let state = |adapter: &str, key: &str, generation: i64| AdapterStateRecord {
        adapter: adapter.into(),
        key: key.into(),
        generation,
        // Text a database must keep as it is: quotes, a backslash, a non-ASCII character.
        state: format!(r#"{{"generation":{generation},"text":"\u00e9 \" é"}}"#),
        updated_at: UnixMillis(1_700_000_000_000 + generation),
    };
    assert!(store.adapter_states("janus").await.expect("states").is_empty());
    assert!(store.put_adapter_state(state("janus", "janus-b", 1)).await.expect("put"));
    assert!(store.put_adapter_state(state("janus", "janus-a", 3)).await.expect("put"));
    assert!(store.put_adapter_state(state("janus", "janus-a", 5)).await.expect("put"));
    // Overtaken: an older or the same generation changes nothing.
    assert!(!store.put_adapter_state(state("janus", "janus-a", 4)).await.expect("put"));
    assert!(!store.put_adapter_state(state("janus", "janus-a", 5)).await.expect("put"));
    assert!(store.put_adapter_state(state("other", "janus-a", 1)).await.expect("put"));
    drop(store);
    let store = database.open().await;
    assert_eq!(
        store.adapter_states("janus").await.expect("states"),
        vec![state("janus", "janus-a", 5), state("janus", "janus-b", 1)]
    );
    assert_eq!(
        store.adapter_states("other").await.expect("states"),
        vec![state("other", "janus-a", 1)]
    );
}

pub async fn the_latest_node_room_state_wins(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
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

pub async fn concurrent_writes_are_all_durable_and_survive_a_reopen(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
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
    store.close().await;
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
    let reopened = database.open().await;
    assert_eq!(
        reopened.counts().await.expect("counts").events,
        400,
        "nothing lost across a reopen"
    );
}

/// A write retried after its commit's answer was lost: with its writer's mark ([`WriteMark`])
/// it writes nothing again, rate cells (added to) included, and says so; a later write of the
/// writer is written, an earlier one is not, another writer's marks are its own, and marks
/// survive a reopen. Marks not moved since the retention's cutoff are pruned.
pub async fn a_marked_write_applied_again_writes_nothing_twice(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let second = T0.as_secs();
    let marked = |writer: &str, number: u64, bytes: u64| WriteBatch {
        events: vec![EventRecord {
            key: format!("{writer}-{number}"),
            ..EventRecord::from_event(&lk::AnalyticsEvent {
                id: format!("AE_{writer}_{number}"),
                room_id: "RM_1".into(),
                ..Default::default()
            })
        }],
        rate_cells: vec![RateCellRecord {
            node_id: "sfu-1".into(),
            second,
            cell: RateCell { bytes_in: bytes, ..RateCell::default() },
        }],
        webhooks: vec![webhook(&format!("EV_{writer}_{number}"), "x", T0, &["WE_a"])],
        mark: Some(WriteMark { writer: writer.to_owned(), number, at: T0 }),
        ..WriteBatch::default()
    };
    let bytes_in = |store: Arc<dyn Store>| async move {
        let cells = store.node_rates("sfu-1", T0, T0.plus_millis(1000)).await.expect("rates");
        cells.iter().map(|(_, cell)| cell.bytes_in).sum::<u64>()
    };
    let receipt = store.write(marked("w1", 1, 100)).await.expect("write");
    assert_eq!((receipt.deliveries, receipt.repeated), (1, false));
    let receipt = store.write(marked("w1", 1, 100)).await.expect("write again");
    assert_eq!((receipt.deliveries, receipt.repeated), (0, true), "{receipt:?}");
    assert_eq!(bytes_in(store.clone()).await, 100, "the cell is counted once");

    let receipt = store.write(marked("w1", 3, 5)).await.expect("a later write");
    assert_eq!((receipt.deliveries, receipt.repeated), (1, false));
    assert!(store.write(marked("w1", 2, 1000)).await.expect("an earlier write").repeated);
    let receipt = store.write(marked("w2", 1, 7)).await.expect("another writer");
    assert!(!receipt.repeated, "writers' numbers are their own");
    assert_eq!(bytes_in(store.clone()).await, 112);
    // Without a mark, nothing tells a retry from a new write: its cells add up again.
    let unmarked = WriteBatch { mark: None, ..marked("w3", 1, 1) };
    store.write(unmarked.clone()).await.expect("unmarked");
    store.write(unmarked).await.expect("unmarked again");
    assert_eq!(bytes_in(store.clone()).await, 114);
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.events, 4, "w1's 1 and 3, w2's 1, w3's 1");

    let store = database.open().await;
    assert!(store.write(marked("w1", 3, 5)).await.expect("after a reopen").repeated);
    assert!(!store.write(marked("w2", 2, 1)).await.expect("after a reopen").repeated);
    assert_eq!(bytes_in(store.clone()).await, 115);

    // Writers gone quiet since the cutoff lose their marks; one that wrote later keeps it.
    let later = T0.plus_millis(7_200_000);
    let receipt = store
        .write(WriteBatch {
            mark: Some(WriteMark { writer: "w2".into(), number: 3, at: later }),
            ..WriteBatch::default()
        })
        .await
        .expect("a later mark");
    assert!(!receipt.repeated);
    let pruned = store.prune(T0.plus_millis(3_600_000)).await.expect("prune");
    assert_eq!(pruned.write_marks, 1, "w1's mark");
    assert!(store.write(marked("w2", 3, 1)).await.expect("kept").repeated);
}

pub async fn prune_removes_what_is_older_than_the_retention(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let (service, receiver, clock) = core();
    service.room_started(room("RM_old", "old"));
    service.room_ended(room("RM_old", "old"));
    clock.advance_millis(86_400_000);
    service.room_started(lk::Room { creation_time: 1_700_086_400, ..room("RM_new", "new") });
    store.write(batch_from(&receiver)).await.expect("write");
    let pruned = store.prune(UnixMillis(1_700_000_000_000 + 3_600_000)).await.expect("prune");
    assert_eq!((pruned.events, pruned.rooms), (2, 1));
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.events, counts.rooms), (1, 1));
}

// --- The webhook outbox ---

const T0: UnixMillis = UnixMillis(1_700_000_000_000);
const LEASE_MS: i64 = 30_000;

fn endpoint(id: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.to_owned(),
        url: format!("http://127.0.0.1:9/{id}"),
        signing: Signing::Livekit,
        api_key: "key".to_owned(),
        secret: "secret".to_owned(),
        include_events: Vec::new(),
        exclude_events: vec!["room_finished".to_owned()],
        enabled: true,
        source: EndpointSource::Api,
        created_at: T0,
    }
}

fn webhook(id: &str, room: &str, at: UnixMillis, endpoints: &[&str]) -> OutgoingWebhook {
    OutgoingWebhook {
        message: WebhookMessage::new(
            RenderedWebhook {
                id: id.to_owned(),
                event: "room_started".to_owned(),
                resource_key: room.to_owned(),
                subject: WebhookSubject {
                    room_sid: format!("RM_{room}"),
                    room_name: room.to_owned(),
                    participant_identity: format!("{room}-someone"),
                    ..WebhookSubject::default()
                },
                body: format!("{{\"id\":\"{id}\"}}"),
            },
            String::new(),
            at,
        ),
        endpoint_ids: endpoints.iter().map(|e| (*e).to_owned()).collect(),
    }
}

fn attempt(claimed: &ClaimedDelivery, outcome: AttemptOutcome) -> AttemptRecord {
    let number = claimed.delivery.attempts + 1;
    AttemptRecord {
        delivery_id: claimed.delivery.id,
        claim: claimed.claim.clone(),
        attempt: number,
        started_at: T0.plus_millis(i64::from(number) * 1000),
        duration_ms: 12,
        status_code: Some(if outcome == AttemptOutcome::Delivered { 200 } else { 503 }),
        error: (outcome != AttemptOutcome::Delivered).then(|| "HTTP 503".to_owned()),
        outcome,
    }
}

fn claim_request(owner: &str, now: UnixMillis, endpoints: &[(&str, u32)]) -> ClaimRequest {
    ClaimRequest {
        owner: owner.to_owned(),
        now,
        lease_ms: LEASE_MS,
        slots: endpoints.iter().map(|(id, slots)| ((*id).to_owned(), *slots)).collect(),
        run: 1,
    }
}

/// Claims every due head of `endpoints` for `owner` at `now`.
async fn claim(
    store: &dyn Store,
    owner: &str,
    now: UnixMillis,
    endpoints: &[&str],
) -> Vec<ClaimedDelivery> {
    let slots: Vec<(&str, u32)> = endpoints.iter().map(|id| (*id, 1000)).collect();
    store.claim(claim_request(owner, now, &slots)).await.expect("claim").deliveries
}

async fn record(store: &dyn Store, attempts: Vec<AttemptRecord>) -> Vec<bool> {
    store.record_attempts(attempts).await.expect("record")
}

async fn write(store: &dyn Store, batch: WriteBatch) -> u64 {
    store.write(batch).await.expect("write").deliveries
}

async fn status_of(store: &dyn Store, id: i64) -> (DeliveryStatus, u32) {
    let (delivery, _) = store.delivery(id).await.expect("delivery").expect("exists");
    (delivery.status, delivery.attempts)
}

/// The ids of the pending deliveries, in id order.
async fn pending_ids(store: &dyn Store) -> Vec<i64> {
    let page = store
        .deliveries(DeliveriesQuery {
            status: Some(DeliveryStatus::Pending),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list");
    let mut ids: Vec<i64> = page.items.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids
}

pub async fn webhooks_are_stored_once_with_a_delivery_per_endpoint_and_survive_a_reopen(
    harness: &dyn Harness,
) {
    let database = harness.database().await;
    let store = database.open().await;
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
    assert_eq!(write(store.as_ref(), batch.clone()).await, 3);
    // The same messages again (a retried write): nothing new.
    assert_eq!(write(store.as_ref(), batch).await, 0);
    assert_eq!(
        store.outbox_counts().await.expect("counts"),
        OutboxCounts { pending: 3, delivered: 0, dead: 0 }
    );
    // Per room: the deliveries of the messages about it.
    assert_eq!(
        store.room_outbox_counts("RM_r1").await.expect("counts"),
        OutboxCounts { pending: 2, delivered: 0, dead: 0 }
    );
    assert_eq!(
        store.room_outbox_counts("RM_r2").await.expect("counts"),
        OutboxCounts { pending: 1, delivered: 0, dead: 0 }
    );
    assert_eq!(store.room_outbox_counts("RM_r3").await.expect("counts"), OutboxCounts::default());
    store.close().await;
    let store = database.open().await;
    let claimed = claim(store.as_ref(), "i1", T0.plus_millis(10), &["WE_a", "WE_b"]).await;
    let mut shape: Vec<(&str, &str, &str)> = claimed
        .iter()
        .map(|c| {
            let d = &c.delivery;
            (d.message_id.as_str(), d.endpoint_id.as_str(), d.resource_key.as_str())
        })
        .collect();
    shape.sort_unstable();
    assert_eq!(shape, [("EV_1", "WE_a", "r1"), ("EV_1", "WE_b", "r1"), ("EV_2", "WE_b", "r2")]);
    let first = claimed.iter().find(|c| c.delivery.message_id == "EV_1").expect("EV_1");
    assert_eq!(first.delivery.payload, "{\"id\":\"EV_1\"}", "the exact body");
    assert_eq!(first.delivery.event, "room_started");
    assert_eq!(first.delivery.subject.room_sid, "RM_r1", "the subject is stored with it");
    assert_eq!(first.delivery.subject.participant_identity, "r1-someone");
    assert_eq!((first.delivery.attempts, first.delivery.created_at), (0, T0));
    let ids: Vec<i64> = claimed.iter().map(|c| c.delivery.id).collect();
    assert!(
        claimed.iter().filter(|c| c.delivery.endpoint_id == "WE_b").count() == 2
            && ids.iter().collect::<HashSet<_>>().len() == 3
    );
    let endpoints = store.endpoints().await.expect("endpoints");
    assert_eq!(endpoints, [endpoint("WE_a"), endpoint("WE_b")]);
}

/// A webhook message is one per key (`WebhookMessage::key`), not per id, as an event is: messages
/// that share an id under distinct keys are both stored, each delivered with its own body and
/// pruned on its own; a message whose key is stored already is ignored with its deliveries,
/// whatever its id.
pub async fn webhook_messages_are_stored_once_per_key_whatever_their_ids(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let keyed = |key: &str, room: &str, body: &str| {
        let mut webhook = webhook("EV_same", room, T0, &["WE_a"]);
        webhook.message.key = key.to_owned();
        webhook.message.webhook.body = body.to_owned();
        webhook
    };
    let batch = WriteBatch {
        webhooks: vec![keyed("r-1", "x", "first"), keyed("r-2", "y", "second")],
        ..WriteBatch::default()
    };
    assert_eq!(write(store, batch).await, 2, "one id, two keys: two messages");
    let mut third = keyed("r-2", "z", "third");
    third.message.webhook.id = "EV_other".into();
    let again = WriteBatch { webhooks: vec![third], ..WriteBatch::default() };
    assert_eq!(write(store, again).await, 0, "a stored key is ignored with its deliveries");
    for room in ["RM_x", "RM_y"] {
        let counts = store.room_outbox_counts(room).await.expect("counts");
        assert_eq!(counts, OutboxCounts { pending: 1, delivered: 0, dead: 0 }, "{room}");
    }
    assert_eq!(store.room_outbox_counts("RM_z").await.expect("counts"), OutboxCounts::default());

    // Distinct rooms are distinct queues: both are claimed at once, each with its own body.
    let claimed = claim(store, "i1", T0, &["WE_a"]).await;
    let mut shape: Vec<(&str, &str)> = claimed
        .iter()
        .map(|c| (c.delivery.message_id.as_str(), c.delivery.payload.as_str()))
        .collect();
    shape.sort_unstable();
    assert_eq!(shape, [("EV_same", "first"), ("EV_same", "second")]);
    let first = claimed.iter().find(|c| c.delivery.payload == "first").expect("first");
    let (listed, _) = store.delivery(first.delivery.id).await.expect("delivery").expect("exists");
    assert_eq!(listed.message_id, "EV_same", "the API shows the webhook's id");

    // Pruning takes the delivered message only; the other keeps its body.
    assert_eq!(record(store, vec![attempt(first, AttemptOutcome::Delivered)]).await, [true]);
    let pruned = store.prune(T0.plus_millis(86_400_000)).await.expect("prune");
    assert_eq!((pruned.deliveries, pruned.messages), (1, 1));
    let rest = claim(store, "i2", T0.plus_millis(LEASE_MS + 1), &["WE_a"]).await;
    let bodies: Vec<&str> = rest.iter().map(|c| c.delivery.payload.as_str()).collect();
    assert_eq!(bodies, ["second"]);
}

/// Webhooks as a version before webhook message keys left them (SQL both backends run on the
/// schema of that version): three messages of endpoint `WE_a`'s, each with a delivery, the
/// second claimed by `old` until 5,000 ms (epoch 3), the third's delivery (id 3, the highest id
/// handed out) pruned since.
pub const WEBHOOKS_BEFORE_MESSAGE_KEYS: &str = "\
    INSERT INTO webhook_messages (id, event, event_id, resource_key, room_sid, room_name, payload, created_at_ms) \
    VALUES ('EV_a', 'room_started', '', 'a', 'RM_a', 'a', 'body a', 1000), \
           ('EV_b', 'room_started', '', 'b', 'RM_b', 'b', 'body b', 1000), \
           ('EV_c', 'room_started', '', 'c', 'RM_c', 'c', 'body c', 1000); \
    INSERT INTO webhook_deliveries (message_id, endpoint_id, resource_key, event, status, attempts, retry_base, \
        next_attempt_at_ms, created_at_ms, updated_at_ms, claimed_by, claim_expires_at_ms, claim_epoch) \
    VALUES ('EV_a', 'WE_a', 'a', 'room_started', 'pending', 0, 0, 1000, 1000, 1000, NULL, NULL, 0), \
           ('EV_b', 'WE_a', 'b', 'room_started', 'pending', 1, 0, 1000, 1000, 1000, 'old', 5000, 3), \
           ('EV_c', 'WE_a', 'c', 'room_started', 'pending', 0, 0, 1000, 1000, 1000, NULL, NULL, 0); \
    DELETE FROM webhook_deliveries WHERE message_id = 'EV_c';";

/// What a store migrated from [`WEBHOOKS_BEFORE_MESSAGE_KEYS`] holds: the messages, keyed by
/// their ids (one written again is stored once), their deliveries with their ids, claims and
/// bodies, and a new delivery's id past the pruned one's.
pub async fn webhooks_stored_before_message_keys_keep_their_deliveries(store: &dyn Store) {
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let early = claim(store, "new", UnixMillis(2000), &["WE_a"]).await;
    let shape: Vec<(i64, &str, &str)> = early
        .iter()
        .map(|c| (c.delivery.id, c.delivery.message_id.as_str(), c.delivery.payload.as_str()))
        .collect();
    assert_eq!(shape, [(1, "EV_a", "body a")], "the old claim on EV_b holds until 5,000 ms");
    let late = claim(store, "new", UnixMillis(6000), &["WE_a"]).await;
    let shape: Vec<(i64, &str, u32, i64)> = late
        .iter()
        .map(|c| (c.delivery.id, c.delivery.payload.as_str(), c.delivery.attempts, c.claim.epoch))
        .collect();
    assert_eq!(shape, [(2, "body b", 1, 4)], "taken over from the old claim");
    let (listed, _) = store.delivery(2).await.expect("delivery").expect("exists");
    assert_eq!(listed.message_id, "EV_b");

    let batch = WriteBatch {
        webhooks: vec![webhook("EV_a", "a", UnixMillis(7000), &["WE_a"])],
        ..WriteBatch::default()
    };
    assert_eq!(write(store, batch).await, 0, "an old message written again: its key is its id");
    let mut new = webhook("EV_a", "a", UnixMillis(7000), &["WE_a"]);
    new.message.key = "r-new".into();
    let batch = WriteBatch { webhooks: vec![new], ..WriteBatch::default() };
    assert_eq!(write(store, batch).await, 1, "the same id under a key of its own");
    assert_eq!(pending_ids(store).await, [1, 2, 4], "ids never go back");

    assert_eq!(record(store, vec![attempt(&early[0], AttemptOutcome::Delivered)]).await, [true]);
    let pruned = store.prune(UnixMillis(5000)).await.expect("prune");
    assert_eq!((pruned.deliveries, pruned.messages), (1, 2), "EV_a's delivery, EV_a and EV_c");
    assert_eq!(
        store.room_outbox_counts("RM_a").await.expect("counts"),
        OutboxCounts { pending: 1, delivered: 0, dead: 0 },
        "the new message about room a"
    );
}

pub async fn attempts_move_a_delivery_to_delivered_or_dead_and_are_kept(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    write(
        store,
        WriteBatch {
            webhooks: vec![
                webhook("EV_1", "r", T0, &["WE_a"]),
                webhook("EV_2", "r", T0, &["WE_a"]),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let retry_at = T0.plus_millis(5000);
    let claimed = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(claimed.len(), 1, "one key: only its head");
    let first = claimed[0].delivery.id;
    assert_eq!(
        record(store, vec![attempt(&claimed[0], AttemptOutcome::Retry(retry_at))]).await,
        [true]
    );
    assert!(
        claim(store, "i1", T0.plus_millis(4999), &["WE_a"]).await.is_empty(),
        "a head waiting for its retry holds its key"
    );
    let again = claim(store, "i1", retry_at, &["WE_a"]).await;
    assert_eq!(
        again.iter().map(|c| (c.delivery.id, c.delivery.attempts)).collect::<Vec<_>>(),
        [(first, 1)]
    );
    assert!(again[0].claim.epoch > claimed[0].claim.epoch, "every claim bumps the epoch");
    assert_eq!(record(store, vec![attempt(&again[0], AttemptOutcome::Delivered)]).await, [true]);
    // Recorded twice (a retried record): the claim is gone, nothing changes.
    assert_eq!(record(store, vec![attempt(&again[0], AttemptOutcome::Dead)]).await, [false]);
    let next = claim(store, "i1", retry_at, &["WE_a"]).await;
    assert_eq!(next.len(), 1);
    let second = next[0].delivery.id;
    assert!(second > first);
    assert_eq!(record(store, vec![attempt(&next[0], AttemptOutcome::Dead)]).await, [true]);

    let (delivery, rows) = store.delivery(first).await.expect("delivery").expect("exists");
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Delivered, 2));
    assert_eq!(delivery.last_status_code, Some(200));
    assert_eq!(delivery.delivered_at, Some(T0.plus_millis(2012)));
    assert_eq!(delivery.next_attempt_at, None);
    let codes: Vec<Option<u16>> = rows.iter().map(|row| row.status_code).collect();
    assert_eq!(codes, [Some(503), Some(200)]);
    assert_eq!(status_of(store, second).await, (DeliveryStatus::Dead, 1));
    assert!(pending_ids(store).await.is_empty());
    assert_eq!(
        store.outbox_counts().await.expect("counts"),
        OutboxCounts { pending: 0, delivered: 1, dead: 1 }
    );

    // Listing: newest first, by status, paged.
    let dead = store
        .deliveries(DeliveriesQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.items.iter().map(|d| d.id).collect::<Vec<_>>(), [second]);
    let page =
        store.deliveries(DeliveriesQuery { limit: 1, ..Default::default() }).await.expect("list");
    assert_eq!((page.items[0].id, page.next), (second, Some(second)));
    let rest = store
        .deliveries(DeliveriesQuery { limit: 1, before: page.next, ..Default::default() })
        .await
        .expect("list");
    assert_eq!((rest.items[0].id, rest.next), (first, None));
    let by_endpoint = store
        .deliveries(DeliveriesQuery {
            endpoint_id: Some("WE_other".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(by_endpoint.items.is_empty());
    write(
        store,
        WriteBatch { webhooks: vec![webhook("EV_3", "q", T0, &["WE_a"])], ..WriteBatch::default() },
    )
    .await;
    assert_eq!(
        store.room_outbox_counts("RM_r").await.expect("counts"),
        OutboxCounts { pending: 0, delivered: 1, dead: 1 },
        "a room's counts follow its deliveries' outcomes, not other rooms'"
    );
    assert_eq!(
        store.room_outbox_counts("RM_q").await.expect("counts"),
        OutboxCounts { pending: 1, delivered: 0, dead: 0 }
    );
}

/// Writes `count` messages for `WE_a` on key `r`, `step_ms` apart, and makes each dead.
async fn dead_deliveries(store: &dyn Store, count: i64, step_ms: i64) -> Vec<i64> {
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let hooks = (0..count)
        .map(|i| webhook(&format!("EV_{i}"), "r", T0.plus_millis(i * step_ms), &["WE_a"]))
        .collect();
    write(store, WriteBatch { webhooks: hooks, ..WriteBatch::default() }).await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let claimed = claim(store, "i1", T0.plus_millis(count * step_ms), &["WE_a"]).await;
        assert_eq!(claimed.len(), 1);
        let mut record_3 = attempt(&claimed[0], AttemptOutcome::Dead);
        record_3.attempt = 3;
        assert_eq!(record(store, vec![record_3]).await, [true]);
        ids.push(claimed[0].delivery.id);
    }
    ids
}

pub async fn requeue_expedite_and_replay_make_deliveries_due_again(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    let ids = dead_deliveries(store, 4, 1000).await;

    let now = T0.plus_millis(60_000);
    // Requeue one: pending, due now, its schedule restarting after its 3 attempts.
    let requeued = store.requeue(ids[0], now).await.expect("requeue").expect("requeued");
    assert_eq!((requeued.next_attempt_at, requeued.attempts, requeued.retry_base), (now, 3, 3));
    assert_eq!(requeued.payload, "{\"id\":\"EV_0\"}");
    assert_eq!(store.requeue(ids[0], now).await.expect("requeue"), None, "already pending");
    assert_eq!(store.requeue(999_999, now).await.expect("requeue"), None, "no such delivery");
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
                status: DeliveryStatus::Dead,
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
    // Requeued deliveries go in id order again: the oldest first.
    let claimed = claim(store, "i1", later, &["WE_a"]).await;
    assert_eq!(claimed.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(claimed[0].delivery.retry_base, 3);
}

pub async fn a_deleted_endpoint_leaves_its_deliveries_dead_and_not_requeueable(
    harness: &dyn Harness,
) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    write(
        store,
        WriteBatch { webhooks: vec![webhook("EV_1", "r", T0, &["WE_a"])], ..WriteBatch::default() },
    )
    .await;
    let claimed = claim(store, "i1", T0, &["WE_a"]).await;
    let id = claimed[0].delivery.id;
    let deleted = store.delete_endpoint("WE_a", T0).await.expect("delete");
    assert_eq!(deleted.map(|e| e.id), Some("WE_a".to_owned()));
    assert_eq!(store.delete_endpoint("WE_a", T0).await.expect("delete"), None);
    assert_eq!(status_of(store, id).await.0, DeliveryStatus::Dead);
    // An attempt in flight when it was deleted does not bring it back.
    assert_eq!(record(store, vec![attempt(&claimed[0], AttemptOutcome::Retry(T0))]).await, [false]);
    assert_eq!(status_of(store, id).await, (DeliveryStatus::Dead, 0));
    assert_eq!(store.requeue(id, T0).await.expect("requeue"), None, "no endpoint to send to");
    assert!(pending_ids(store).await.is_empty());
}

pub async fn prune_removes_finished_deliveries_but_never_pending_ones(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    write(
        store,
        WriteBatch {
            webhooks: vec![
                webhook("EV_1", "r", T0, &["WE_a"]),
                webhook("EV_2", "r", T0, &["WE_a"]),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let claimed = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(record(store, vec![attempt(&claimed[0], AttemptOutcome::Delivered)]).await, [true]);
    let pruned = store.prune(T0.plus_millis(86_400_000)).await.expect("prune");
    assert_eq!((pruned.deliveries, pruned.messages), (1, 1));
    let pending = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].delivery.payload, "{\"id\":\"EV_2\"}",
        "a pending delivery keeps its message"
    );
    assert_eq!(store.delivery(claimed[0].delivery.id).await.expect("delivery"), None);
}

pub async fn claims_hand_out_due_queue_heads_once(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    for id in ["WE_a", "WE_b"] {
        store.put_endpoint(endpoint(id)).await.expect("endpoint");
    }
    // Three keys on WE_a (two messages each), one on WE_b; one message not due until T0 + 10 s.
    let mut hooks = Vec::new();
    for (index, key) in ["k1", "k2", "k3", "k1", "k2", "k3"].iter().enumerate() {
        hooks.push(webhook(&format!("EV_a{index}"), key, T0, &["WE_a"]));
    }
    hooks.push(webhook("EV_b", "k1", T0.plus_millis(10_000), &["WE_b"]));
    write(store, WriteBatch { webhooks: hooks, ..WriteBatch::default() }).await;

    let limited =
        store.claim(claim_request("i1", T0, &[("WE_a", 2), ("WE_b", 5)])).await.expect("claim");
    let keys: Vec<&str> =
        limited.deliveries.iter().map(|c| c.delivery.resource_key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2"], "at most the endpoint's slots, lowest ids first");
    assert_eq!(limited.next_due, Some(T0.plus_millis(10_000)), "when WE_b's message is due");
    assert!(limited.deliveries.iter().all(|c| c.expires_at == T0.plus_millis(LEASE_MS)));
    let rest = claim(store, "i2", T0, &["WE_a", "WE_b"]).await;
    assert_eq!(
        rest.iter().map(|c| c.delivery.resource_key.as_str()).collect::<Vec<_>>(),
        ["k3"],
        "claimed heads are not handed out again, and a key's second message waits for its head"
    );
    assert!(claim(store, "i2", T0.plus_millis(LEASE_MS - 1), &["WE_a"]).await.is_empty());
    let due = claim(store, "i2", T0.plus_millis(10_000), &["WE_b"]).await;
    assert_eq!(due.len(), 1, "due once its time comes");
    // Finishing k1's head makes its next message the head.
    let k1 = &limited.deliveries[0];
    assert_eq!(record(store, vec![attempt(k1, AttemptOutcome::Delivered)]).await, [true]);
    let next = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(
        next.iter()
            .map(|c| (c.delivery.resource_key.as_str(), c.delivery.message_id.as_str()))
            .collect::<Vec<_>>(),
        [("k1", "EV_a3")]
    );
    assert!(store.claim(claim_request("i1", T0, &[])).await.expect("claim").deliveries.is_empty());
}

pub async fn a_stale_claim_records_nothing_and_an_expired_one_is_taken_over(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    write(
        store,
        WriteBatch { webhooks: vec![webhook("EV_1", "r", T0, &["WE_a"])], ..WriteBatch::default() },
    )
    .await;
    let old = claim(store, "dead-instance", T0, &["WE_a"]).await;
    assert_eq!(old.len(), 1);
    // The lease runs out: another instance takes the delivery over, with a higher epoch.
    let after_lease = T0.plus_millis(LEASE_MS);
    let new = claim(store, "live-instance", after_lease, &["WE_a"]).await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].delivery.id, old[0].delivery.id);
    assert!(new[0].claim.epoch > old[0].claim.epoch);
    // The old claimant comes back: its record is fenced out, whatever it says.
    assert_eq!(record(store, vec![attempt(&old[0], AttemptOutcome::Dead)]).await, [false]);
    let forged = ClaimToken { owner: "dead-instance".into(), epoch: new[0].claim.epoch };
    let mut forged_attempt = attempt(&new[0], AttemptOutcome::Dead);
    forged_attempt.claim = forged;
    assert_eq!(record(store, vec![forged_attempt]).await, [false], "the owner must match too");
    assert_eq!(status_of(store, old[0].delivery.id).await, (DeliveryStatus::Pending, 0));
    let (_, rows) = store.delivery(old[0].delivery.id).await.expect("delivery").expect("exists");
    assert!(rows.is_empty(), "a fenced attempt leaves no attempt row");
    // The current claimant records.
    assert_eq!(record(store, vec![attempt(&new[0], AttemptOutcome::Delivered)]).await, [true]);
    assert_eq!(status_of(store, old[0].delivery.id).await, (DeliveryStatus::Delivered, 1));
}

pub async fn released_claims_can_be_claimed_at_once(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let hooks = (0..3).map(|i| webhook(&format!("EV_{i}"), &format!("r{i}"), T0, &["WE_a"]));
    write(store, WriteBatch { webhooks: hooks.collect(), ..WriteBatch::default() }).await;
    assert_eq!(claim(store, "stopping", T0, &["WE_a"]).await.len(), 3);
    assert!(claim(store, "other", T0, &["WE_a"]).await.is_empty());
    assert_eq!(store.release_claims("stopping").await.expect("release"), 3);
    assert_eq!(store.release_claims("stopping").await.expect("release"), 0);
    assert_eq!(claim(store, "other", T0, &["WE_a"]).await.len(), 3, "before the lease ran out");
}

pub async fn a_requeued_delivery_waits_for_the_request_in_flight_on_its_key(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    write(
        store,
        WriteBatch {
            webhooks: vec![
                webhook("EV_1", "r", T0, &["WE_a"]),
                webhook("EV_2", "r", T0, &["WE_a"]),
            ],
            ..WriteBatch::default()
        },
    )
    .await;
    let first = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(record(store, vec![attempt(&first[0], AttemptOutcome::Dead)]).await, [true]);
    let second = claim(store, "i1", T0, &["WE_a"]).await;
    assert_eq!(second.len(), 1);
    assert!(second[0].delivery.id > first[0].delivery.id);
    // The first is replayed while the second is in flight: it has the lower id, but waits.
    assert!(store.requeue(first[0].delivery.id, T0).await.expect("requeue").is_some());
    assert!(claim(store, "i2", T0, &["WE_a"]).await.is_empty(), "two requests on one key at once");
    assert_eq!(record(store, vec![attempt(&second[0], AttemptOutcome::Delivered)]).await, [true]);
    let replayed = claim(store, "i2", T0, &["WE_a"]).await;
    assert_eq!(
        replayed.iter().map(|c| c.delivery.id).collect::<Vec<_>>(),
        [first[0].delivery.id],
        "once the key is free"
    );
}

/// A claim takes a queue's head with the deliveries after it (its run), in order, as long as
/// each is due and free; a run cut short is released, and a release under a stale claim changes
/// nothing.
pub async fn a_queue_is_claimed_with_its_run_and_released_claims_are_fenced(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let mut hooks: Vec<OutgoingWebhook> =
        (0..5).map(|i| webhook(&format!("EV_{i}"), "r", T0, &["WE_a"])).collect();
    hooks.push(webhook("EV_other", "other", T0, &["WE_a"]));
    hooks.push(webhook("EV_late", "r", T0.plus_millis(60_000), &["WE_a"]));
    write(store, WriteBatch { webhooks: hooks, ..WriteBatch::default() }).await;
    let request =
        |owner: &str, run: u32| ClaimRequest { run, ..claim_request(owner, T0, &[("WE_a", 10)]) };
    let claimed = store.claim(request("i1", 3)).await.expect("claim").deliveries;
    let messages: Vec<&str> = claimed.iter().map(|c| c.delivery.message_id.as_str()).collect();
    assert_eq!(messages, ["EV_0", "EV_1", "EV_2", "EV_other"], "each queue's head, then its run");
    assert!(store.claim(request("i2", 10)).await.expect("claim").deliveries.is_empty());
    // The run's first two are sent; the third is cut short and released.
    assert_eq!(
        record(
            store,
            vec![
                attempt(&claimed[0], AttemptOutcome::Delivered),
                attempt(&claimed[1], AttemptOutcome::Delivered)
            ]
        )
        .await,
        [true, true]
    );
    let stale = ClaimToken { owner: "i1".into(), epoch: claimed[2].claim.epoch + 1 };
    assert_eq!(store.release(vec![(claimed[2].delivery.id, stale)]).await.expect("release"), 0);
    assert_eq!(
        store
            .release(vec![(claimed[2].delivery.id, claimed[2].claim.clone())])
            .await
            .expect("release"),
        1
    );
    // The rest of the queue, up to the message that is not due yet.
    let rest = store.claim(request("i2", 10)).await.expect("claim").deliveries;
    let messages: Vec<&str> = rest.iter().map(|c| c.delivery.message_id.as_str()).collect();
    assert_eq!(messages, ["EV_2", "EV_3", "EV_4"], "a run stops at a delivery not due");
    assert!(rest.windows(2).all(|pair| pair[0].delivery.id < pair[1].delivery.id));
}

/// Two dispatchers on one database, each claiming, "sending" and recording in a loop with some
/// failures: every delivery ends delivered exactly once, no key ever has two requests in flight,
/// and each key's first attempts go in id order.
pub async fn two_claimants_keep_one_request_in_flight_per_key_in_order(harness: &dyn Harness) {
    let database = harness.database().await;
    let first_store = database.open().await;
    let second_store = database.open().await;
    for id in ["WE_a", "WE_b"] {
        first_store.put_endpoint(endpoint(id)).await.expect("endpoint");
    }
    let keys = 8;
    let per_key = 12;
    let mut hooks = Vec::new();
    for index in 0..keys * per_key {
        let key = format!("k{}", index % keys);
        hooks.push(webhook(&format!("EV_{index}"), &key, T0, &["WE_a", "WE_b"]));
    }
    for chunk in hooks.chunks(16) {
        write(
            first_store.as_ref(),
            WriteBatch { webhooks: chunk.to_vec(), ..WriteBatch::default() },
        )
        .await;
    }
    let total = (keys * per_key * 2) as usize;
    // Shared log: (endpoint, key) currently in flight; first attempts per queue; deliveries.
    #[derive(Default)]
    struct Log {
        in_flight: HashSet<(String, String)>,
        first_attempts: HashMap<(String, String), Vec<i64>>,
        delivered: Vec<i64>,
        violations: Vec<String>,
    }
    let log = Arc::new(std::sync::Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for (owner, store) in [("d1", first_store.clone()), ("d2", second_store.clone())] {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut round = 0u64;
            loop {
                round += 1;
                let now = T0.plus_millis(i64::try_from(round).expect("small") * 10);
                let claimed = store
                    .claim(claim_request(owner, now, &[("WE_a", 3), ("WE_b", 3)]))
                    .await
                    .expect("claim");
                {
                    let mut log = log.lock().expect("log");
                    if log.delivered.len() == total {
                        return;
                    }
                    for c in &claimed.deliveries {
                        let queue =
                            (c.delivery.endpoint_id.clone(), c.delivery.resource_key.clone());
                        if !log.in_flight.insert(queue.clone()) {
                            log.violations.push(format!("two in flight on {queue:?}"));
                        }
                        if c.delivery.attempts == 0 {
                            log.first_attempts.entry(queue).or_default().push(c.delivery.id);
                        }
                    }
                }
                tokio::task::yield_now().await;
                let mut records = Vec::new();
                for (index, c) in claimed.deliveries.iter().enumerate() {
                    // Every third attempt fails once and is retried at once.
                    let fail = c.delivery.attempts == 0 && (c.delivery.id + index as i64) % 3 == 0;
                    let outcome =
                        if fail { AttemptOutcome::Retry(now) } else { AttemptOutcome::Delivered };
                    records.push(attempt(c, outcome));
                }
                // Out of flight before the record commits: the store, not this log, keeps the
                // key from being claimed until then.
                {
                    let mut log = log.lock().expect("log");
                    for c in &claimed.deliveries {
                        log.in_flight.remove(&(
                            c.delivery.endpoint_id.clone(),
                            c.delivery.resource_key.clone(),
                        ));
                    }
                }
                let recorded = store.record_attempts(records.clone()).await.expect("record");
                let mut log = log.lock().expect("log");
                for (record, ok) in records.iter().zip(recorded) {
                    if !ok {
                        log.violations
                            .push(format!("a current claim was fenced: {}", record.delivery_id));
                    } else if record.outcome == AttemptOutcome::Delivered {
                        log.delivered.push(record.delivery_id);
                    }
                }
                assert!(round < 100_000, "the claimants made no progress");
            }
        }));
    }
    for task in tasks {
        task.await.expect("claimant");
    }
    {
        let log = log.lock().expect("log");
        assert!(log.violations.is_empty(), "{:?}", log.violations);
        let mut delivered = log.delivered.clone();
        delivered.sort_unstable();
        delivered.dedup();
        assert_eq!(delivered.len(), total, "every delivery delivered exactly once");
        assert_eq!(log.delivered.len(), total);
        for (queue, ids) in &log.first_attempts {
            assert!(
                ids.windows(2).all(|pair| pair[0] < pair[1]),
                "first attempts out of order on {queue:?}: {ids:?}"
            );
        }
    }
    assert_eq!(
        first_store.outbox_counts().await.expect("counts"),
        OutboxCounts { pending: 0, delivered: total as u64, dead: 0 }
    );
}

pub async fn writes_that_create_deliveries_wake_dispatchers(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let wake = store.outbox_changed();
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    write(
        store.as_ref(),
        WriteBatch { webhooks: vec![webhook("EV_1", "r", T0, &["WE_a"])], ..WriteBatch::default() },
    )
    .await;
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("a write that created a delivery wakes the dispatcher");
}

pub async fn configured_endpoints_are_deleted_only_when_no_live_instance_lists_them(
    harness: &dyn Harness,
) {
    let database = harness.database().await;
    let store = database.open().await;
    let store = store.as_ref();
    let configured = |id: &str| EndpointRecord { source: EndpointSource::Config, ..endpoint(id) };
    let sync = |instance: &str, ids: &[&str], now: UnixMillis| ConfiguredEndpoints {
        instance_id: instance.to_owned(),
        endpoints: ids.iter().map(|id| configured(id)).collect(),
        now,
        liveness_ms: 10_000,
    };
    store.put_endpoint(endpoint("WE_api")).await.expect("endpoint");
    assert!(
        store
            .sync_configured_endpoints(sync("A", &["WE_1", "WE_shared"], T0))
            .await
            .expect("sync")
            .is_empty()
    );
    // B lists another set: A's endpoints stay while A is live.
    let deleted = store
        .sync_configured_endpoints(sync("B", &["WE_2", "WE_shared"], T0.plus_millis(1000)))
        .await
        .expect("sync");
    assert!(deleted.is_empty(), "{deleted:?}");
    let ids = |endpoints: Vec<EndpointRecord>| {
        let mut ids: Vec<String> = endpoints.into_iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        ids(store.endpoints().await.expect("endpoints")),
        ["WE_1", "WE_2", "WE_api", "WE_shared"]
    );
    // A keeps refreshing; B stops. Once B's listing is older than the liveness, WE_2 goes.
    store
        .sync_configured_endpoints(sync("A", &["WE_1", "WE_shared"], T0.plus_millis(9_000)))
        .await
        .expect("sync");
    let deleted = store
        .sync_configured_endpoints(sync("A", &["WE_1", "WE_shared"], T0.plus_millis(11_001)))
        .await
        .expect("sync");
    assert_eq!(deleted, ["WE_2"]);
    // A restarts with a smaller configuration: what only it listed goes at once.
    let deleted = store
        .sync_configured_endpoints(sync("A", &["WE_1"], T0.plus_millis(12_000)))
        .await
        .expect("sync");
    assert_eq!(deleted, ["WE_shared"]);
    // A stops gracefully: its endpoints stay until an instance that does not list them syncs.
    store.unlist_instance("A").await.expect("unlist");
    assert_eq!(ids(store.endpoints().await.expect("endpoints")), ["WE_1", "WE_api"]);
    let deleted = store
        .sync_configured_endpoints(sync("C", &[], T0.plus_millis(13_000)))
        .await
        .expect("sync");
    assert_eq!(deleted, ["WE_1"], "API endpoints are never touched");
    assert_eq!(ids(store.endpoints().await.expect("endpoints")), ["WE_api"]);
}

pub async fn a_closed_store_refuses_calls(harness: &dyn Harness) {
    let database = harness.database().await;
    let store = database.open().await;
    store.ping().await.expect("ping");
    store.close().await;
    assert!(matches!(
        store
            .write(WriteBatch {
                webhooks: vec![webhook("EV_1", "r", T0, &[])],
                ..Default::default()
            })
            .await,
        Err(crate::StoreError::Closed)
    ));
    assert!(store.ping().await.is_err());
}
