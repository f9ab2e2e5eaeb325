//! Stats workers through the service: reference counting across callers, connected-state
//! carry-over, late samples after close, and the delayed reap.

use std::time::Duration;

use telemetry_core::proto as lk;
use telemetry_core::{Call, DEFAULT_GUARD, Direction, StatsKey};

use crate::harness::{Harness, join, participant, room, stat};

fn left_event_type(harness: &Harness) -> i32 {
    harness.events().last().expect("an event").r#type
}

#[test]
fn left_needs_every_guard_released_and_sends_left_when_connected() {
    let harness = Harness::new();
    let part = participant("PA_1");
    // The room manager (guard "media") and the signal-bytes collector (guard "signal").
    harness.service.participant_joined(room(), part.clone(), None, None, true, "media");
    harness.service.participant_joined(room(), part.clone(), None, None, false, "signal");
    harness.service.participant_active(room(), part.clone(), None, false, "media");
    assert_eq!(harness.service.metrics().value("livekit_participant_total", &[]), 1.0);

    harness.service.participant_left(room(), part.clone(), false, "signal");
    assert_eq!(
        harness.service.metrics().value("livekit_participant_total", &[]),
        1.0,
        "media still holds it"
    );
    harness.service.participant_left(room(), part, true, "media");
    assert_eq!(harness.service.metrics().value("livekit_participant_total", &[]), 0.0);
    assert_eq!(left_event_type(&harness), lk::AnalyticsEventType::ParticipantLeft as i32);
}

#[test]
fn resume_recreating_a_closed_worker_still_ends_in_participant_left() {
    let harness = Harness::new();
    let part = participant("PA_1");
    harness.service.participant_active(room(), part.clone(), None, false, "media");
    // A stale leave closes the worker while the session resumes elsewhere.
    harness.service.participant_left(room(), part.clone(), false, "media");
    harness.service.participant_resumed(
        room(),
        part.clone(),
        "node-b",
        lk::ReconnectReason::RrSignalDisconnected,
        "media",
    );
    harness.service.participant_left(room(), part, true, "media");
    assert_eq!(
        left_event_type(&harness),
        lk::AnalyticsEventType::ParticipantLeft as i32,
        "connected state carried over to the recreated worker"
    );
    assert_eq!(
        harness.service.metrics().value("livekit_participant_total", &[]),
        0.0,
        "and it closes again"
    );
}

#[test]
fn a_closed_worker_collects_late_samples_until_reaped_after_the_cleanup_wait() {
    let harness = Harness::new();
    let part = participant("PA_1");
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    harness.service.participant_active(room(), part.clone(), None, false, "g");
    harness.service.participant_left(room(), part, true, "g");
    harness.outputs();

    harness.advance(Duration::from_secs(150));
    harness.track_stats("RoomSid", &key, stat(100, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1, "2.5 min after close the worker still collects");
    assert_eq!(harness.service.worker_count(), 1);

    harness.advance(Duration::from_secs(30));
    harness.track_stats("RoomSid", &key, stat(50, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1, "exactly 3 min: not yet more than the wait");
    assert_eq!(harness.service.worker_count(), 1);

    harness.advance(Duration::from_secs(30));
    harness.track_stats("RoomSid", &key, stat(25, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1, "the reaping flush still sends the final samples");
    assert_eq!(batches[0].stats[0].coalesced.stream().primary_bytes, 25);
    assert_eq!(harness.service.worker_count(), 0, "reaped");

    harness.track_stats("RoomSid", &key, stat(1, 1));
    assert!(harness.flush().is_empty());
    assert_eq!(
        harness.service.sample_counters().without_worker,
        1,
        "a sample after the reap is counted, not lost silently"
    );
}

#[test]
fn rejoin_after_close_gets_a_new_worker_and_the_old_one_is_flushed_once_more() {
    let harness = Harness::new();
    let part = participant("PA_1");
    let key = StatsKey::for_data("", Direction::Downstream, "PA_1", "TR_DTPA_1");
    harness.service.participant_joined(room(), part.clone(), None, None, true, "g");
    harness.track_stats("RoomSid", &key, stat(10, 1));
    harness.service.participant_left(room(), part.clone(), true, "g");
    harness.service.participant_joined(room(), part, None, None, true, "g");
    harness.track_stats("RoomSid", &key, stat(20, 1));
    let batches = harness.flush();
    let mut bytes: Vec<u64> =
        batches.iter().map(|b| b.stats[0].coalesced.stream().primary_bytes).collect();
    bytes.sort_unstable();
    assert_eq!(bytes, vec![10, 20], "neither the old worker's samples nor the new one's are lost");
    assert_eq!(
        harness.service.worker_count(),
        1,
        "the replaced worker is gone after its last flush"
    );
}

#[test]
fn workers_in_two_rooms_with_one_participant_id_are_separate() {
    let harness = Harness::new();
    let part = participant("PA_1");
    let other_room =
        lk::Room { sid: "RM_other".into(), name: "other".into(), ..Default::default() };
    harness.service.participant_active(room(), part.clone(), None, false, "g");
    harness.service.participant_joined(other_room.clone(), part.clone(), None, None, true, "g");
    let _ = harness.service.apply(
        harness.meta(),
        Call::ParticipantLeft {
            room: other_room,
            participant: part,
            should_send_event: true,
            guard: "g".into(),
        },
    );
    assert_eq!(
        left_event_type(&harness),
        lk::AnalyticsEventType::ParticipantConnectionAborted as i32,
        "never active in the other room"
    );
}

/// A restart: the worker states a first service produced rebuild the workers of a second one, so
/// that a sample after the restart is recorded and the leave is a `participant_left` (the worker
/// was connected), not a `participant_connection_aborted`.
#[test]
fn restored_workers_carry_on_calls_in_progress() {
    use telemetry_core::{Output, WorkerState};

    let first = Harness::new();
    let alice = participant("PA_1");
    let bob = participant("PA_2");
    join(&first, &room(), &alice);
    first.service.participant_active(room(), alice.clone(), None, false, "media");
    join(&first, &room(), &bob);
    join(&first, &room(), &participant("PA_3"));
    first.service.participant_left(room(), participant("PA_3"), true, DEFAULT_GUARD);
    // What a store keeps: the last state of each worker, open ones only.
    let mut stored: Vec<WorkerState> = Vec::new();
    for output in first.outputs() {
        if let Output::Worker(state) = output.output {
            stored.retain(|kept| kept.participant_id != state.participant_id);
            if state.open {
                stored.push(state);
            }
        }
    }
    assert_eq!(stored.len(), 2);

    let second = Harness::new();
    assert_eq!(second.service.restore_workers(stored.clone()), 2);
    assert_eq!(second.service.restore_workers(stored), 0, "existing workers are kept");
    assert!(second.outputs().is_empty(), "restoring produces nothing");
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DT");
    second.track_stats("RoomSid", &key, stat(1000, 10));
    assert_eq!(second.service.sample_counters().recorded, 1);
    // Alice holds two guards: both must be released before her worker closes.
    second.service.participant_left(room(), alice.clone(), true, DEFAULT_GUARD);
    second.service.participant_left(room(), alice, true, "media");
    second.service.participant_left(room(), bob, true, DEFAULT_GUARD);
    let left: Vec<String> = second
        .calls()
        .into_iter()
        .filter_map(|(webhook, _)| webhook.map(|webhook| webhook.event))
        .collect();
    assert_eq!(
        left,
        ["participant_left", "participant_left", "participant_connection_aborted"],
        "alice was connected, bob never was"
    );
    assert_eq!(second.service.metrics().value("livekit_participant_total", &[]), 0.0);
}

/// One partition's log for the take-over tests: (stream sequence, call). Alice joins, becomes
/// active and sends samples; Bob joins later; Alice leaves; Bob sends more and leaves.
fn partition_log() -> Vec<(u64, Call)> {
    use telemetry_core::DEFAULT_GUARD as GUARD;
    let alice = participant("PA_1");
    let bob = participant("PA_2");
    let joined = |who: &lk::ParticipantInfo| Call::ParticipantJoined {
        room: room(),
        participant: who.clone(),
        client_info: None,
        client_meta: None,
        should_send_event: true,
        guard: GUARD.into(),
    };
    let active = |who: &lk::ParticipantInfo| Call::ParticipantActive {
        room: room(),
        participant: who.clone(),
        client_meta: None,
        is_migration: false,
        guard: GUARD.into(),
    };
    let sample = |who: &str, bytes: u64| Call::TrackStats {
        room_id: "RoomSid".into(),
        room_name: "RoomName".into(),
        key: StatsKey::for_data("", Direction::Upstream, who, format!("TR_{who}")),
        stat: stat(bytes, 1),
    };
    let left = |who: &lk::ParticipantInfo| Call::ParticipantLeft {
        room: room(),
        participant: who.clone(),
        should_send_event: true,
        guard: GUARD.into(),
    };
    vec![
        (1, Call::RoomStarted { room: room() }),
        (2, joined(&alice)),
        (3, active(&alice)),
        (4, sample("PA_1", 1)),
        (5, sample("PA_1", 2)),
        (6, joined(&bob)),
        (7, sample("PA_1", 4)),
        (8, active(&bob)),
        (9, sample("PA_2", 8)),
        (10, left(&alice)),
        (11, sample("PA_2", 16)),
        (12, sample("PA_2", 32)),
        (13, left(&bob)),
    ]
}

/// What a store keeps of a run: event ids, the bytes in stats windows, the last state of each
/// worker (open or closed, until its reap), and the webhook names in order.
#[derive(Default)]
struct Kept {
    events: Vec<String>,
    bytes: u64,
    workers: Vec<telemetry_core::WorkerState>,
    webhooks: Vec<String>,
}

impl Kept {
    fn store(&mut self, outputs: Vec<telemetry_core::Sequenced>) {
        use telemetry_core::Output;
        for output in outputs {
            match output.output {
                Output::Call(call) => {
                    if let Some(event) = call.event {
                        let id = event.decode().id;
                        // Events are kept once per id, as every store does.
                        if !self.events.contains(&id) {
                            self.events.push(id);
                            if let Some(webhook) = call.webhook {
                                self.webhooks.push(webhook.decode().event);
                            }
                        }
                    }
                }
                Output::Stats(batch) => {
                    self.bytes +=
                        batch.stats.iter().map(|s| s.coalesced.stream().primary_bytes).sum::<u64>()
                }
                Output::Worker(state) => {
                    self.workers.retain(|kept| kept.participant_id != state.participant_id);
                    if !state.reaped {
                        self.workers.push(state);
                    }
                }
                _ => {}
            }
        }
    }
}

fn apply_log(harness: &Harness, log: &[(u64, Call)]) {
    for (sequence, call) in log {
        let origin = telemetry_core::Origin { sequence: *sequence, index: 0 };
        harness.service.apply_from(harness.meta(), origin, call.clone()).expect("applied");
    }
}

/// A restart: the rooms a first run started and did not end count in `livekit_room_total` again
/// once restored, each on the node that started it, and a room's end observes its duration as
/// without the restart. A room open already, or restored twice, counts once; rooms beyond
/// `limits.max_open_rooms` are refused and counted; forgetting rooms (cluster mode: a partition
/// let go) takes them out of the gauge without observing a duration.
#[test]
fn restored_open_rooms_count_until_they_end() {
    use telemetry_core::{CoreConfig, CoreLimits, RestoredRoom};

    use crate::harness::T0;
    let harness = Harness::with_config(CoreConfig {
        node_id: "node-a".into(),
        limits: CoreLimits { max_open_rooms: 3, ..CoreLimits::default() },
        ..CoreConfig::default()
    });
    let restored = |sid: &str, node: &str| RestoredRoom {
        sid: sid.into(),
        name: format!("{sid}-name"),
        node: node.into(),
        started_at: T0.plus_millis(-90_000),
    };
    let metric =
        |name: &str, labels: &[(&str, &str)]| harness.service.metrics().value(name, labels);
    let rooms = |node: &str| metric("livekit_room_total", &[("node_id", node)]);
    harness.service.room_started(room());
    let stored = vec![
        restored("RoomSid", "node-a"),
        restored("RM_b", "node-b"),
        restored("RM_c", "node-a"),
        restored("RM_d", "node-b"),
    ];
    assert_eq!(
        harness.service.restore_open_rooms(stored.clone()),
        2,
        "RoomSid is open already, RM_d is past the limit"
    );
    assert_eq!((rooms("node-a"), rooms("node-b")), (2.0, 1.0));
    assert_eq!(metric("rtc_telemetry_limit_refusals_total", &[("limit", "open_rooms")]), 1.0);
    assert_eq!(harness.service.restore_open_rooms(stored), 0, "restored once");
    assert_eq!((rooms("node-a"), rooms("node-b")), (2.0, 1.0));
    assert_eq!(harness.outputs().len(), 1, "the room_started call's only: restoring produces none");

    // RM_c ends: its duration runs from its stored start (its creation time is not given).
    let ended = lk::Room { sid: "RM_c".into(), name: "RM_c-name".into(), ..Default::default() };
    harness.service.room_ended(ended);
    assert_eq!(rooms("node-a"), 1.0);
    let durations = harness.service.metrics();
    let family = durations.family("livekit_room_duration_seconds").expect("durations");
    let observed: Vec<(u64, f64)> = family
        .samples
        .iter()
        .filter_map(|sample| match &sample.value {
            telemetry_core::metrics::MetricValue::Histogram(histogram) => {
                Some((histogram.count(), histogram.sum()))
            }
            telemetry_core::metrics::MetricValue::Number(_) => None,
        })
        .filter(|(count, _)| *count > 0)
        .collect();
    assert_eq!(observed, [(1, 90.0)], "one duration, from the stored start");

    assert_eq!(harness.service.forget_open_rooms(|_, name| name == "RM_b-name"), 1);
    assert_eq!((rooms("node-a"), rooms("node-b")), (1.0, 0.0));
    harness.service.room_ended(room());
    assert_eq!(rooms("node-a"), 0.0);
}

/// Cluster mode's take-over, in the core: the first owner stores what it applied up to a cut (a
/// flush, with the worker states as of the cut) and dies after applying more; the next owner
/// restores the workers as of the cut and replays every call after it. The store then holds
/// each event once, every sample's bytes in exactly one window, and the leaves are reported as
/// without the take-over (`participant_left`: the restored workers were connected).
#[test]
fn a_take_over_restored_at_a_cut_and_replayed_stores_each_event_once_and_each_sample_once() {
    let log = partition_log();
    let sent: u64 = 1 + 2 + 4 + 8 + 16 + 32;

    let alone = Harness::new();
    apply_log(&alone, &log);
    alone.service.flush_stats();
    let mut expected = Kept::default();
    expected.store(alone.outputs());
    assert_eq!(expected.bytes, sent);

    for cut in 1..log.len() {
        let first = Harness::new();
        apply_log(&first, &log[..cut]);
        first.service.flush_stats();
        let mut kept = Kept::default();
        kept.store(first.outputs());
        // Applied after the cut, never stored: the first owner died.
        apply_log(&first, &log[cut..]);
        drop(first);

        let next = Harness::new();
        next.service.restore_workers(kept.workers.clone());
        apply_log(&next, &log[cut..]);
        next.service.flush_stats();
        kept.store(next.outputs());
        assert_eq!(kept.events, expected.events, "cut after {cut}: each event once, same ids");
        assert_eq!(kept.bytes, sent, "cut after {cut}: each sample in exactly one window");
        assert_eq!(kept.webhooks, expected.webhooks, "cut after {cut}: the same webhooks");
        assert!(kept.workers.iter().all(|w| !w.open), "cut after {cut}: both left");
    }
}

/// Lifecycle calls replayed onto state that already reflects them change nothing: a join on the
/// worker it made activates a guard already active (one leave still closes it), a leave of a
/// worker already gone is an aborted connection whose ids are those of the first application
/// (so the store keeps the first one), and the participant gauge counts the participant once.
#[test]
fn lifecycle_calls_replayed_onto_restored_state_are_idempotent() {
    let log = partition_log();
    let harness = Harness::new();
    apply_log(&harness, &log[..3]);
    let mut kept = Kept::default();
    kept.store(harness.outputs());
    assert_eq!(kept.workers.len(), 1);

    let next = Harness::new();
    next.service.restore_workers(kept.workers.clone());
    // Alice's join and activation again: her worker exists, with the guard active.
    apply_log(&next, &log[1..3]);
    let before = kept.events.clone();
    kept.store(next.outputs());
    assert_eq!(kept.events, before, "the replayed calls' events have the ids stored already");
    assert_eq!(next.service.metrics().value("livekit_participant_total", &[]), 1.0);
    assert_eq!(next.service.worker_count(), 1);
    // One leave closes her worker (the replayed join took no second reference) ...
    apply_log(&next, &log[9..10]);
    assert_eq!(next.service.metrics().value("livekit_participant_total", &[]), 0.0);
    let outputs = next.outputs();
    let mut left = Kept::default();
    left.store(outputs);
    assert_eq!(left.webhooks, ["participant_left"]);
    // ... and replaying that leave too finds no open worker: no second close, no count below 0.
    apply_log(&next, &log[9..10]);
    assert_eq!(next.service.metrics().value("livekit_participant_total", &[]), 0.0);
}

/// A partition's workers forgotten (lost, or about to be restored) take their unflushed samples
/// with them and produce nothing; other rooms' workers are untouched.
#[test]
fn forgotten_workers_produce_nothing_and_leave_the_gauge() {
    let harness = Harness::new();
    let other = lk::Room { sid: "RM_other".into(), name: "other".into(), ..Default::default() };
    join(&harness, &room(), &participant("PA_1"));
    join(&harness, &other, &participant("PA_2"));
    harness.track_stats(
        "RoomSid",
        &StatsKey::for_data("", Direction::Upstream, "PA_1", "T"),
        stat(5, 1),
    );
    harness.track_stats(
        "RM_other",
        &StatsKey::for_data("", Direction::Upstream, "PA_2", "T"),
        stat(7, 1),
    );
    harness.outputs();
    assert_eq!(harness.service.forget_workers(|_, name| name == "RoomName"), 1);
    assert_eq!(harness.service.worker_count(), 1);
    assert_eq!(harness.service.metrics().value("livekit_participant_total", &[]), 1.0);
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    assert_eq!(&*batches[0].room_id, "RM_other");
    assert_eq!(batches[0].stats[0].coalesced.stream().primary_bytes, 7);
}

/// A worker closed at or before the cut (its participant left) is kept by the store, closed,
/// until its reap, and the next owner restores it closed: a late sample after the leave, which
/// the closed worker would have collected until its reap, lands in a window as in a run without
/// the take-over; the restored closed worker reports no leave again, is no live participant in
/// the metrics, and its reap removes it from the store.
#[test]
fn a_late_sample_after_a_leave_at_the_cut_is_in_a_window_after_a_take_over() {
    let mut log = partition_log();
    let late = Call::TrackStats {
        room_id: "RoomSid".into(),
        room_name: "RoomName".into(),
        key: StatsKey::for_data("", Direction::Upstream, "PA_2", "TR_PA_2"),
        stat: stat(64, 1),
    };
    log.push((14, late));

    let alone = Harness::new();
    apply_log(&alone, &log);
    alone.service.flush_stats();
    let mut expected = Kept::default();
    expected.store(alone.outputs());
    assert_eq!(expected.bytes, 127, "without the cut, the late sample is in a window");

    let first = Harness::new();
    apply_log(&first, &log[..13]);
    first.service.flush_stats();
    let mut kept = Kept::default();
    kept.store(first.outputs());
    assert_eq!(kept.workers.len(), 2, "both closed workers are kept until their reap");
    assert!(kept.workers.iter().all(|w| !w.open && w.closed_at.is_some()));
    let next = Harness::new();
    assert_eq!(next.service.restore_workers(kept.workers.clone()), 2);
    assert_eq!(next.service.metrics().value("livekit_participant_total", &[]), 0.0);
    apply_log(&next, &log[13..]);
    next.service.flush_stats();
    let events = kept.events.len();
    kept.store(next.outputs());
    assert_eq!(kept.events.len(), events, "no leave reported again");
    assert_eq!(kept.events, expected.events);
    assert_eq!(kept.webhooks, expected.webhooks);
    assert_eq!(kept.bytes, expected.bytes, "the late sample's 64 bytes are in a window");
    assert_eq!(next.service.sample_counters().without_worker, 0);

    // The reap, `worker_cleanup_wait` after the leave, removes the closed workers from the store.
    let closed_at = kept.workers.iter().filter_map(|w| w.closed_at).max().expect("closed");
    let wait = i64::try_from(next.service.config().worker_cleanup_wait.as_millis()).expect("wait");
    next.service.flush_stats_at(telemetry_core::UnixMillis(closed_at.0 + wait + 1));
    kept.store(next.outputs());
    assert!(kept.workers.is_empty(), "reaped: nothing kept");
    assert_eq!(next.service.worker_count(), 0);
}

/// Found by the `core_calls` fuzz target: a flush at a time far ahead closed the worker for
/// idleness with that time, and once the flush clock was back to normal the closed worker waited
/// for it to catch up before its reap (a clock that jumps ahead and back pins closed workers).
#[test]
fn a_worker_closed_by_a_flush_at_a_time_the_clock_later_goes_back_from_is_still_reaped() {
    use telemetry_core::{CallMeta, UnixMillis};
    let harness = Harness::new();
    let service = &harness.service;
    let now = service.now();
    let room = || lk::Room { sid: "RM_a".into(), name: "a".into(), ..Default::default() };
    let participant = || lk::ParticipantInfo {
        sid: "PA_a".into(),
        identity: "alice".into(),
        state: lk::participant_info::State::Active as i32,
        ..Default::default()
    };
    let active = Call::ParticipantActive {
        room: room(),
        participant: participant(),
        client_meta: None,
        is_migration: false,
        guard: DEFAULT_GUARD.into(),
    };
    service
        .apply(CallMeta { at: now.at.plus_millis(2_000_000_000), ..now }, active)
        .expect("active");
    // A flush far in the past takes the join's touch; one far ahead closes the worker as idle.
    service.flush_stats_at(UnixMillis(-600_000_000_000));
    service.flush_stats_at(UnixMillis(5_000_000_000_000_000_000));
    assert_eq!(service.worker_count(), 1);
    let left = Call::ParticipantLeft {
        room: room(),
        participant: participant(),
        should_send_event: true,
        guard: DEFAULT_GUARD.into(),
    };
    service.apply(service.now(), left).expect("left");
    // Back at the real time: the cleanup wait counts from the first flush back.
    let wait = service.config().worker_cleanup_wait.as_millis() as i64;
    service.flush_stats_at(now.at);
    assert_eq!(service.worker_count(), 1, "kept for the cleanup wait");
    service.flush_stats_at(now.at.plus_millis(wait + 1));
    assert_eq!(service.worker_count(), 0, "reaped once the wait has passed");
}

/// A flush that closes idle workers while their participants rejoin on another thread: a rejoin
/// that replaced a closed worker pushed the new worker's open state, and the flush's closed
/// state of the old worker, pushed after it, must not replace it in the store. So the last state
/// pushed for every participant is open, as every participant's worker is once both are done
/// (the store would otherwise restore them closed after a restart).
#[test]
fn a_rejoin_during_the_flush_that_closes_its_idle_worker_keeps_the_new_worker_s_state_last() {
    const PARTICIPANTS: usize = 20_000;
    let harness = Harness::new();
    let people: Vec<lk::ParticipantInfo> =
        (0..PARTICIPANTS).map(|n| participant(&format!("PA_{n}"))).collect();
    for person in &people {
        join(&harness, &room(), person);
    }
    harness.service.flush_stats();
    // Idle for longer than `participant_idle_timeout` (2 h) at the next flush.
    harness.advance(Duration::from_secs(3 * 3600));
    harness.outputs();
    std::thread::scope(|scope| {
        scope.spawn(|| harness.service.flush_stats());
        scope.spawn(|| {
            for person in people.iter().rev() {
                join(&harness, &room(), person);
            }
        });
    });
    let mut last: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut closed = 0;
    for output in harness.outputs() {
        if let telemetry_core::Output::Worker(state) = output.output {
            closed += usize::from(!state.open);
            last.insert(state.participant_id.to_string(), state.open);
        }
    }
    let stale: Vec<&String> = last.iter().filter(|(_, open)| !**open).map(|(id, _)| id).collect();
    assert!(stale.is_empty(), "{} of {closed} closed states pushed last: {stale:?}", stale.len());
    assert_eq!(last.len(), PARTICIPANTS, "every participant's state pushed");
    assert_eq!(
        harness.service.metrics().value("livekit_participant_total", &[]),
        PARTICIPANTS as f64
    );
}
