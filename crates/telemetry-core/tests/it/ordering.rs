//! Call order, the output queue, sinks, and the overload policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use telemetry_core::proto as lk;
use telemetry_core::{
    AnalyticsSink, CoreConfig, DEFAULT_GUARD, Direction, Output, Shed, StatsBatch, StatsKey,
    TelemetryService, WebhookSink,
};

use crate::harness::{Harness, participant, room, stat};

#[test]
fn outputs_come_out_in_call_order_with_consecutive_sequence_numbers() {
    let harness = Harness::new();
    harness.service.room_started(room());
    harness.service.participant_joined(
        room(),
        participant("PA_1"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    harness.service.participant_active(room(), participant("PA_1"), None, false, DEFAULT_GUARD);
    harness.service.participant_left(room(), participant("PA_1"), true, DEFAULT_GUARD);
    harness.service.room_ended(room());
    let outputs = harness.outputs();
    let seqs: Vec<u64> = outputs.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    // Each call that changes a worker is followed by the worker's state, for the store.
    let described: Vec<String> = outputs
        .iter()
        .map(|o| match &o.output {
            Output::Call(call) => call.method.to_owned(),
            Output::Worker(state) => format!(
                "worker {} open={} connected={} guards={:?}",
                state.participant_id, state.open, state.connected, state.guards
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        described,
        [
            "roomStarted",
            "participantJoined",
            "worker PA_1 open=true connected=false guards=[\"default\"]",
            "participantActive",
            "worker PA_1 open=true connected=true guards=[\"default\"]",
            "participantLeft",
            "worker PA_1 open=false connected=true guards=[]",
            "roomEnded",
        ]
    );
    assert_eq!(harness.service.last_seq(), 8);
}

#[test]
fn a_sample_right_after_the_join_finds_its_worker() {
    let harness = Harness::new();
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    for round in 0..100 {
        let part = participant(&format!("PA_{round}"));
        let key = StatsKey { participant_id: part.sid.clone(), ..key.clone() };
        harness.service.participant_joined(room(), part, None, None, false, DEFAULT_GUARD);
        harness.track_stats("RoomSid", &key, stat(1, 1));
    }
    assert_eq!(harness.service.sample_counters().recorded, 100);
    assert_eq!(harness.service.sample_counters().without_worker, 0);
}

#[test]
fn concurrent_callers_each_keep_their_own_order_and_nothing_is_lost() {
    let harness = Harness::new();
    let threads = 4;
    let per_thread = 500;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let service = harness.service.clone();
            scope.spawn(move || {
                for index in 0..per_thread {
                    let room = lk::Room {
                        sid: format!("RM_{thread}"),
                        name: format!("room-{thread}-{index}"),
                        ..Default::default()
                    };
                    service.room_started(room);
                }
            });
        }
    });
    let outputs = harness.outputs();
    assert_eq!(outputs.len(), threads * per_thread);
    for thread in 0..threads {
        let names: Vec<usize> = outputs
            .iter()
            .filter_map(|o| match &o.output {
                Output::Call(call) => {
                    call.webhook.as_ref().and_then(|w| w.decode().room).map(|r| r.name)
                }
                _ => None,
            })
            .filter_map(|name| {
                name.strip_prefix(&format!("room-{thread}-"))
                    .map(|i| i.parse::<usize>().expect("index"))
            })
            .collect();
        assert_eq!(names, (0..per_thread).collect::<Vec<_>>(), "thread {thread} in its own order");
    }
}

#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
}

impl AnalyticsSink for Recorder {
    fn send_stats(&self, batch: &StatsBatch) {
        self.log.lock().push(format!("stats:{}", batch.participant_id));
    }
    fn send_event(&self, event: &lk::AnalyticsEvent) {
        self.log.lock().push(format!("event:{}", event.r#type));
    }
    fn send_node_room_states(&self, rooms: &lk::AnalyticsNodeRooms) {
        self.log.lock().push(format!("rooms:{}", rooms.sequence_number));
    }
}

impl WebhookSink for Recorder {
    fn notify(&self, event: &lk::WebhookEvent, resource_key: &str) {
        self.log.lock().push(format!("webhook:{}:{resource_key}", event.event));
    }
}

#[test]
fn sinks_get_the_webhook_before_the_event_and_everything_in_order() {
    let harness = Harness::new();
    harness.service.participant_active(room(), participant("PA_1"), None, false, DEFAULT_GUARD);
    harness.track_stats(
        "RoomSid",
        &StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DT"),
        stat(5, 1),
    );
    harness.service.flush_stats();
    harness.service.local_room_state(lk::AnalyticsNodeRooms::default());
    let recorder = Recorder::default();
    // The worker's state after the call is an output too, which sinks do not see, and so is its
    // quality detectors' state at its first flush.
    assert_eq!(harness.receiver.dispatch_available(&recorder, &recorder), 5);
    assert_eq!(
        *recorder.log.lock(),
        [
            "webhook:participant_joined:RoomName".to_owned(),
            format!("event:{}", lk::AnalyticsEventType::ParticipantActive as i32),
            "stats:PA_1".to_owned(),
            "rooms:1".to_owned(),
        ]
    );
}

#[test]
fn overload_sheds_stats_samples_but_never_lifecycle_calls() {
    let harness =
        Harness::with_config(CoreConfig { max_pending_outputs: 3, ..CoreConfig::default() });
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DT");
    harness.service.participant_joined(
        room(),
        participant("PA_1"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    for index in 0..10 {
        harness.service.room_started(lk::Room { sid: format!("RM_{index}"), ..Default::default() });
    }
    // The join is an event and the worker's state, then ten rooms.
    assert_eq!(harness.service.pending_outputs(), 12, "lifecycle calls are never dropped");
    assert_eq!(
        harness.service.track_stats("RoomSid", "RoomName", &key, &stat(1, 1)),
        Err(Shed::Overloaded)
    );
    assert_eq!(harness.service.sample_counters().shed_overload, 1);
    let metrics = harness.service.metrics();
    assert_eq!(
        metrics.value("rtc_telemetry_stats_samples_total", &[("outcome", "shed_overload")]),
        1.0
    );

    harness.outputs();
    assert_eq!(
        harness.service.track_stats("RoomSid", "RoomName", &key, &stat(1, 1)),
        Ok(()),
        "accepted again once drained"
    );
}

#[test]
fn a_runaway_track_is_capped_per_flush() {
    let harness =
        Harness::with_config(CoreConfig { max_samples_per_track: 5, ..CoreConfig::default() });
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DT");
    harness.service.participant_joined(
        room(),
        participant("PA_1"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    let results: Vec<_> = (0..7)
        .map(|_| harness.service.track_stats("RoomSid", "RoomName", &key, &stat(1, 1)))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert_eq!(results[6], Err(Shed::TrackLimit));
    assert_eq!(harness.service.sample_counters().shed_track_limit, 2);
    let batches = harness.flush();
    assert_eq!(batches[0].stats[0].coalesced.stream().primary_bytes, 5);
    assert_eq!(
        harness.service.track_stats("RoomSid", "RoomName", &key, &stat(1, 1)),
        Ok(()),
        "a new flush period"
    );
}

#[test]
fn the_notifier_fires_when_the_queue_becomes_non_empty() {
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = fired.clone();
    let (service, receiver) = TelemetryService::builder(CoreConfig::default())
        .notifier(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }))
        .build();
    service.room_started(room());
    service.room_started(room());
    assert_eq!(fired.load(Ordering::SeqCst), 1, "only on empty to non-empty");
    let mut outputs = Vec::new();
    receiver.take(10, &mut outputs);
    service.room_ended(room());
    assert_eq!(fired.load(Ordering::SeqCst), 2);
    assert!(receiver.wait(std::time::Duration::from_millis(1)));
}

#[test]
fn a_call_applied_from_a_log_origin_gets_the_same_ids_wherever_and_however_often_it_is_applied() {
    use telemetry_core::{Call, Origin};
    let ids = |harness: &Harness, origin: Option<Origin>| {
        let call = Call::RoomStarted { room: room() };
        match origin {
            Some(origin) => harness.service.apply_from(harness.meta(), origin, call),
            None => harness.service.apply(harness.meta(), call),
        }
        .expect("applied");
        let (webhook, event) = harness.calls().pop().expect("the call's outputs");
        (webhook.expect("a webhook").id, event.expect("an event").id)
    };
    let (first, second) = (Harness::new(), Harness::new());
    let origin = Origin { sequence: 41, index: 3 };
    // Another instance replaying the message, or this one applying it twice: the same ids.
    let original = ids(&first, Some(origin));
    assert_eq!(ids(&second, Some(origin)), original);
    assert_eq!(ids(&first, Some(origin)), original);
    assert!(original.0.starts_with("EV_") && original.1.starts_with("AE_"), "{original:?}");
    // Another call of the message, another message, or no origin: other ids.
    assert_ne!(ids(&first, Some(Origin { sequence: 41, index: 4 })), original);
    assert_ne!(ids(&first, Some(Origin { sequence: 42, index: 3 })), original);
    assert_ne!(ids(&first, None), ids(&first, None));
}
