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
