//! Deterministic inputs for the core's benchmarks: a service with joined participants and
//! realistic media samples (5-second windows, three simulcast streams, a score, a mime).

#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::sync::Arc;

use telemetry_core::proto as lk;
use telemetry_core::{
    CallMeta, CoreConfig, DEFAULT_GUARD, Direction, ManualClock, OutputReceiver, StatsKey,
    TelemetryService, UnixMillis,
};

pub const START: UnixMillis = UnixMillis(1_700_000_000_000);
pub const TRACKS_PER_PARTICIPANT: usize = 4;

pub struct Populated {
    pub service: TelemetryService,
    pub receiver: OutputReceiver,
    pub clock: Arc<ManualClock>,
    /// `(room id, key)` of every track, participant by participant.
    pub keys: Vec<(String, StatsKey)>,
}

/// A service with `participants` joined participants (10 per room), each with 2 upstream and
/// 2 downstream media tracks.
pub fn populated(participants: usize) -> Populated {
    populated_with(participants, CoreConfig { node_id: "bench".into(), ..CoreConfig::default() })
}

/// As [`populated`], with the core configured by `config`.
pub fn populated_with(participants: usize, config: CoreConfig) -> Populated {
    let clock = Arc::new(ManualClock::new(START));
    let (service, receiver) =
        TelemetryService::builder(config).clock(clock.clone()).id_seed(7).build();
    let mut keys = Vec::with_capacity(participants * TRACKS_PER_PARTICIPANT);
    for index in 0..participants {
        let room = lk::Room {
            sid: format!("RM_{:012}", index / 10),
            name: format!("room-{}", index / 10),
            ..Default::default()
        };
        let participant = lk::ParticipantInfo {
            sid: format!("PA_{index:012}"),
            identity: format!("user-{index}"),
            ..Default::default()
        };
        service.participant_joined(
            room.clone(),
            participant.clone(),
            None,
            None,
            false,
            DEFAULT_GUARD,
        );
        for track in 0..TRACKS_PER_PARTICIPANT {
            let direction = if track < 2 { Direction::Upstream } else { Direction::Downstream };
            let (source, kind) = if track % 2 == 0 {
                (lk::TrackSource::Camera, lk::TrackType::Video)
            } else {
                (lk::TrackSource::Microphone, lk::TrackType::Audio)
            };
            let key = StatsKey::for_track(
                "DE",
                direction,
                participant.sid.clone(),
                format!("TR_{index:010}{track:02}"),
                source,
                kind,
            );
            keys.push((room.sid.clone(), key));
        }
    }
    let mut drained = Vec::new();
    receiver.take(usize::MAX, &mut drained);
    Populated { service, receiver, clock, keys }
}

/// A media sample covering the 5 seconds before `end`.
pub fn media_sample(end: UnixMillis, seed: u64) -> lk::AnalyticsStat {
    let start = end.plus_millis(-5000);
    let stream = |layer: i32| lk::AnalyticsStream {
        ssrc: 1000 + layer as u32,
        primary_packets: 400 + (seed % 50) as u32,
        primary_bytes: 450_000 + seed % 5000,
        retransmit_packets: (seed % 3) as u32,
        retransmit_bytes: (seed % 3) * 1100,
        padding_packets: 2,
        padding_bytes: 400,
        packets_lost: (seed % 4) as u32,
        frames: 150,
        rtt: 40 + (seed % 20) as u32,
        jitter: 3000 + (seed % 500) as u32,
        nacks: (seed % 2) as u32,
        start_time: Some(start.to_timestamp()),
        end_time: Some(end.to_timestamp()),
        ..Default::default()
    };
    lk::AnalyticsStat {
        score: 4.2 + (seed % 5) as f32 / 10.0,
        streams: vec![stream(0), stream(1), stream(2)],
        mime: "video/VP8".to_owned(),
        ..Default::default()
    }
}

/// A call meta at `at` from the default node.
pub fn meta(service: &TelemetryService, at: UnixMillis) -> CallMeta {
    CallMeta { at, ..service.now() }
}

/// Takes and drops every waiting output.
pub fn drain(receiver: &OutputReceiver) {
    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
}
