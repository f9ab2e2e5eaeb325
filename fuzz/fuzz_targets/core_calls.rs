//! The core's state machine: a sequence of `telemetry_core` calls (every lifecycle method that
//! keeps state, and `TrackStats`), clock steps, flushes and node-rate drains, applied to a
//! `TelemetryService` on a `ManualClock`. Rooms, participants, tracks, guards and nodes come
//! from small alphabets so calls collide; times, counters and intervals are free.
//!
//! Checked after every step: no panic; lifecycle calls never fail; every output's sequence
//! number follows the last one; every output was drained and the sequence number a call or
//! flush returns is the last output drained; the pipeline's store write accounts for every
//! output; a coalesced stat's window never ends before it
//! starts and its rates are finite and not negative. At the end every participant leaves with
//! every guard and flushes after the cleanup wait reap every worker.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rtc_telemetry_fuzz::{core, drain, endpoints, store};
use telemetry_core::proto as lk;
use telemetry_core::{Call, CallMeta, Clock, Direction, Output, StatsKey, UnixMillis};

const ROOMS: [&str; 2] = ["RM_a", "RM_b"];
const PARTICIPANTS: [&str; 3] = ["PA_a", "PA_b", "PA_c"];
const TRACKS: [&str; 4] = ["TR_a", "TR_b", "TR_SGx", "TR_DTx"];
const GUARDS: [&str; 2] = ["default", "g1"];
const NODES: [&str; 2] = ["fuzz-node", "node-b"];

#[derive(Arbitrary, Debug)]
struct Who {
    room: u8,
    participant: u8,
    track: u8,
    guard: u8,
    node: u8,
    /// Milliseconds from the clock's now to the call's `at`.
    skew: i32,
}

#[derive(Arbitrary, Debug)]
struct Stream {
    bytes: u64,
    packets: u32,
    retransmit_bytes: u64,
    padding_bytes: u64,
    packets_lost: u32,
    rtt: u32,
    jitter: u32,
    /// The stream's start and end, in milliseconds from the call's `at`, if set.
    start: Option<i64>,
    end: Option<i64>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    RoomStarted(Who, i64),
    RoomEnded(Who, i64),
    Joined(Who, bool),
    Active(Who, bool),
    Resumed(Who),
    Left(Who, bool),
    Published(Who),
    Unpublished(Who, bool),
    Subscribed(Who),
    Unsubscribed(Who),
    Muted(Who),
    TrackStats { who: Who, downstream: bool, score: f32, streams: Vec<Stream> },
    Advance(u32),
    Flush,
    FlushAt(i64),
    DrainRates,
}

fn pick<'a>(names: &[&'a str], index: u8) -> &'a str {
    names[usize::from(index) % names.len()]
}

fn room(who: &Who, creation_time: i64) -> lk::Room {
    lk::Room {
        sid: pick(&ROOMS, who.room).into(),
        name: format!("{}-name", pick(&ROOMS, who.room)),
        creation_time,
        ..Default::default()
    }
}

fn participant(who: &Who) -> lk::ParticipantInfo {
    let sid = pick(&PARTICIPANTS, who.participant);
    lk::ParticipantInfo {
        sid: sid.into(),
        identity: format!("{sid}-identity"),
        state: lk::participant_info::State::Active as i32,
        ..Default::default()
    }
}

fn track(who: &Who) -> lk::TrackInfo {
    lk::TrackInfo {
        sid: pick(&TRACKS, who.track).into(),
        r#type: lk::TrackType::Video as i32,
        source: lk::TrackSource::Camera as i32,
        mime_type: "video/VP8".into(),
        ..Default::default()
    }
}

fn guard(who: &Who) -> String {
    pick(&GUARDS, who.guard).into()
}

fn participant_id(who: &Who) -> String {
    pick(&PARTICIPANTS, who.participant).into()
}

fn call(op: Op, at: UnixMillis) -> Call {
    match op {
        Op::RoomStarted(who, creation_time) => {
            Call::RoomStarted { room: room(&who, creation_time) }
        }
        Op::RoomEnded(who, creation_time) => Call::RoomEnded { room: room(&who, creation_time) },
        Op::Joined(who, should_send_event) => Call::ParticipantJoined {
            room: room(&who, 0),
            participant: participant(&who),
            client_info: None,
            client_meta: None,
            should_send_event,
            guard: guard(&who),
        },
        Op::Active(who, is_migration) => Call::ParticipantActive {
            room: room(&who, 0),
            participant: participant(&who),
            client_meta: None,
            is_migration,
            guard: guard(&who),
        },
        Op::Resumed(who) => Call::ParticipantResumed {
            room: room(&who, 0),
            participant: participant(&who),
            node_id: pick(&NODES, who.node).into(),
            reason: 0,
            guard: guard(&who),
        },
        Op::Left(who, should_send_event) => Call::ParticipantLeft {
            room: room(&who, 0),
            participant: participant(&who),
            should_send_event,
            guard: guard(&who),
        },
        Op::Published(who) => Call::TrackPublished {
            room: room(&who, 0),
            participant_id: participant_id(&who),
            identity: format!("{}-identity", participant_id(&who)),
            track: track(&who),
            should_send_event: true,
        },
        Op::Unpublished(who, was_published_locally) => Call::TrackUnpublished {
            room: room(&who, 0),
            participant_id: participant_id(&who),
            identity: format!("{}-identity", participant_id(&who)),
            track: track(&who),
            was_published_locally,
            should_send_event: true,
        },
        Op::Subscribed(who) => Call::TrackSubscribed {
            room: room(&who, 0),
            participant_id: participant_id(&who),
            track: track(&who),
            publisher: participant(&Who { participant: who.participant.wrapping_add(1), ..who }),
            should_send_event: true,
        },
        Op::Unsubscribed(who) => Call::TrackUnsubscribed {
            room: room(&who, 0),
            participant_id: participant_id(&who),
            track: track(&who),
            should_send_event: true,
        },
        Op::Muted(who) => Call::TrackMuted {
            room: room(&who, 0),
            participant_id: participant_id(&who),
            track: track(&who),
        },
        Op::TrackStats { who, downstream, score, streams } => {
            let direction = if downstream { Direction::Downstream } else { Direction::Upstream };
            let track_id = pick(&TRACKS, who.track);
            let key = if track_id.starts_with("TR_SG") || track_id.starts_with("TR_DT") {
                StatsKey::for_data("XX", direction, participant_id(&who), track_id)
            } else {
                StatsKey::for_track(
                    "XX",
                    direction,
                    participant_id(&who),
                    track_id,
                    lk::TrackSource::Camera,
                    lk::TrackType::Video,
                )
            };
            let streams = streams
                .into_iter()
                .map(|stream| lk::AnalyticsStream {
                    primary_bytes: stream.bytes,
                    primary_packets: stream.packets,
                    retransmit_bytes: stream.retransmit_bytes,
                    padding_bytes: stream.padding_bytes,
                    packets_lost: stream.packets_lost,
                    rtt: stream.rtt,
                    jitter: stream.jitter,
                    start_time: stream.start.map(|offset| at.plus_millis(offset).to_timestamp()),
                    end_time: stream.end.map(|offset| at.plus_millis(offset).to_timestamp()),
                    ..Default::default()
                })
                .collect();
            Call::TrackStats {
                room_id: pick(&ROOMS, who.room).into(),
                room_name: format!("{}-name", pick(&ROOMS, who.room)),
                key,
                stat: lk::AnalyticsStat { score, streams, ..Default::default() },
            }
        }
        Op::Advance(_) | Op::Flush | Op::FlushAt(_) | Op::DrainRates => {
            unreachable!("not a call")
        }
    }
}

fn check_stats(outputs: &[telemetry_core::Sequenced]) {
    for output in outputs {
        if let Output::Stats(batch) = &output.output {
            for stat in &batch.stats {
                if let Some(window) = &stat.coalesced.window {
                    assert!(
                        window.start <= window.end,
                        "a window ends after it starts: {window:?}"
                    );
                    assert!(window.covered_ms >= 0, "{window:?}");
                    assert!(window.avg_bps.is_finite() && window.avg_bps >= 0.0, "{window:?}");
                    assert!(window.peak_bps.is_finite() && window.peak_bps >= 0.0, "{window:?}");
                }
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let (service, receiver, clock) = core();
    let endpoints = endpoints();
    let mut last = 0;
    for op in ops.into_iter().take(256) {
        match op {
            Op::Advance(millis) => clock.advance_millis(i64::from(millis)),
            Op::Flush => {
                let seq = service.flush_stats();
                let outputs = drain(&receiver, &service, &mut last);
                assert_eq!(seq.is_some(), !outputs.is_empty());
                assert_eq!(seq.unwrap_or(last), last);
                check_stats(&outputs);
                store(outputs, &endpoints);
            }
            Op::FlushAt(at) => {
                let seq = service.flush_stats_at(UnixMillis(at));
                let outputs = drain(&receiver, &service, &mut last);
                assert_eq!(seq.unwrap_or(last), last);
                check_stats(&outputs);
            }
            Op::DrainRates => {
                let seq = service.drain_node_rates();
                drain(&receiver, &service, &mut last);
                assert_eq!(seq.unwrap_or(last), last);
            }
            op => {
                let who = match &op {
                    Op::RoomStarted(who, _)
                    | Op::RoomEnded(who, _)
                    | Op::Joined(who, _)
                    | Op::Active(who, _)
                    | Op::Resumed(who)
                    | Op::Left(who, _)
                    | Op::Published(who)
                    | Op::Unpublished(who, _)
                    | Op::Subscribed(who)
                    | Op::Unsubscribed(who)
                    | Op::Muted(who)
                    | Op::TrackStats { who, .. } => who,
                    _ => unreachable!("handled above"),
                };
                // A handful of node names, far under the node limit: never refused.
                let node = service.node(pick(&NODES, who.node)).expect("under the node limit");
                let at = clock.now().plus_millis(i64::from(who.skew));
                let call = call(op, at);
                let is_stats = matches!(call, Call::TrackStats { .. });
                match service.apply(CallMeta { at, node }, call) {
                    Ok(seq) => {
                        store(drain(&receiver, &service, &mut last), &endpoints);
                        assert_eq!(seq.unwrap_or(last), last, "a call returns its last output");
                    }
                    Err(shed) => assert!(is_stats, "a lifecycle call failed: {shed}"),
                }
            }
        }
    }
    // Every participant leaves every room with every guard; once the cleanup wait has passed
    // (counted from the latest time a call may have carried), flushes reap every worker.
    for room_index in 0..ROOMS.len() {
        for participant_index in 0..PARTICIPANTS.len() {
            for guard_index in 0..GUARDS.len() {
                let who = Who {
                    room: room_index as u8,
                    participant: participant_index as u8,
                    track: 0,
                    guard: guard_index as u8,
                    node: 0,
                    skew: 0,
                };
                let left = Call::ParticipantLeft {
                    room: room(&who, 0),
                    participant: participant(&who),
                    should_send_event: true,
                    guard: guard(&who),
                };
                service.apply(service.now(), left).expect("a lifecycle call never fails");
            }
        }
    }
    drain(&receiver, &service, &mut last);
    let wait = i64::try_from(service.config().worker_cleanup_wait.as_millis()).unwrap_or(i64::MAX);
    let reap_at = clock.now().plus_millis(wait).plus_millis(i64::from(i32::MAX)).plus_millis(1);
    for _ in 0..2 {
        service.flush_stats_at(reap_at);
        check_stats(&drain(&receiver, &service, &mut last));
    }
    assert_eq!(service.worker_count(), 0, "every worker is reaped once its participant left");
});
