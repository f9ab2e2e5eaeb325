//! Pins what the simulator generates for a fixed seed: the number of calls of each kind and a
//! hash of every call's protobuf encoding, so a refactoring that changes one byte of the traffic
//! of `simulate --seed` fails here. Update the expectation (`UPDATE_EXPECT=1`) only when a change
//! of the traffic is intended. Then what `--trouble` does to the samples.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use telemetry_core::UnixMillis;

use crate::{SimulateArgs, generate};

/// 2023-11-14T22:13:20Z: the end of the simulated time.
const END: UnixMillis = UnixMillis(1_700_000_000_000);

/// FNV-1a, 64 bits: a small stable hash that needs no dependency.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The calls' count per kind (the name of their oneof member) and their hash.
fn digest(args: &SimulateArgs) -> String {
    let calls = generate(args, END);
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        hash = fnv1a(hash, &call.encode_length_delimited_to_vec());
        let member = call.call.as_ref().map(|member| format!("{member:?}")).unwrap_or_default();
        let kind = member.split('(').next().unwrap_or_default().to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    let mut text = format!("{} calls, hash {hash:016x}\n", calls.len());
    for (kind, count) in kinds {
        text.push_str(&format!("{kind}: {count}\n"));
    }
    text
}

#[test]
fn the_traffic_of_a_seed_does_not_change() {
    let args = SimulateArgs {
        seed: 42,
        rooms: 3,
        participants: 5,
        duration: Duration::from_secs(600),
        ..SimulateArgs::default()
    };
    expect_test::expect![[r#"
        11116 calls, hash 86b3ece905d1ed6c
        EgressEnded: 1
        EgressStarted: 1
        LocalRoomState: 20
        ParticipantActive: 15
        ParticipantJoined: 15
        ParticipantLeft: 15
        ParticipantResumed: 3
        RoomEnded: 3
        RoomStarted: 3
        TrackMuted: 48
        TrackPublishRequested: 30
        TrackPublished: 30
        TrackStats: 10618
        TrackSubscribeRequested: 120
        TrackSubscribed: 120
        TrackUnmuted: 44
        TrackUnpublished: 30
    "#]]
    .assert_eq(&digest(&args));
}

#[test]
fn the_default_traffic_does_not_change() {
    expect_test::expect![[r#"
        1281 calls, hash 95e6b8ca11f3fba1
        EgressEnded: 1
        EgressStarted: 1
        LocalRoomState: 4
        ParticipantActive: 10
        ParticipantJoined: 12
        ParticipantLeft: 12
        ParticipantResumed: 2
        RoomEnded: 3
        RoomStarted: 3
        TrackMuted: 4
        TrackPublishRequested: 20
        TrackPublished: 20
        TrackStats: 1061
        TrackSubscribeRequested: 52
        TrackSubscribed: 52
        TrackUnmuted: 4
        TrackUnpublished: 20
    "#]]
    .assert_eq(&digest(&SimulateArgs::default()));
}

/// The upstream and downstream media samples of `track` as (participant, start ms, loss %,
/// bytes, rtt), in call order.
fn samples_of(
    calls: &[telemetry_proto::v1::TelemetryCall],
    track: &str,
    stream_type: telemetry_core::proto::StreamType,
) -> Vec<(String, i64, f64, u64, u32)> {
    use telemetry_proto::v1::telemetry_call::Call as Member;
    calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(Member::TrackStats(stats)) => Some(stats),
            _ => None,
        })
        .filter(|stats| {
            let key = stats.key.as_ref().expect("key");
            key.track_id == track && key.stream_type == stream_type as i32
        })
        .map(|stats| {
            let stat = stats.stat.as_ref().expect("stat");
            let (mut packets, mut lost, mut bytes, mut rtt) = (0u64, 0u64, 0u64, 0u32);
            let mut start = i64::MAX;
            for stream in &stat.streams {
                packets += u64::from(stream.primary_packets);
                lost += u64::from(stream.packets_lost);
                bytes += stream.primary_bytes;
                rtt = rtt.max(stream.rtt);
                let at = stream.start_time.expect("start");
                start = start.min(at.seconds * 1000 + i64::from(at.nanos) / 1_000_000);
            }
            let loss = if packets + lost > 0 {
                lost as f64 * 100.0 / (packets + lost) as f64
            } else {
                0.0
            };
            (stats.key.as_ref().expect("key").participant_id.clone(), start, loss, bytes, rtt)
        })
        .collect()
}

fn trouble_args(trouble: &str) -> SimulateArgs {
    SimulateArgs {
        seed: 7,
        rooms: 2,
        participants: 4,
        duration: Duration::from_secs(300),
        troubles: vec![crate::parse_trouble(trouble).expect("valid")],
        ..SimulateArgs::default()
    }
}

#[test]
fn a_lossy_uplink_shows_upstream_and_on_every_subscribers_downstream_in_its_time_only() {
    let args = trouble_args("lossy-uplink:1.2@40s..100s");
    let start = END.0 - 300_000;
    let world = crate::World::new(&args, UnixMillis(start));
    let target = world.troubles()[0].participant_sid.clone();
    let calls = generate(&args, END);
    let published: Vec<String> = calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(telemetry_proto::v1::telemetry_call::Call::TrackPublished(p))
                if p.participant_id == target =>
            {
                p.track.as_ref().map(|t| t.sid.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), 2, "the target gets media and publishes audio and video");
    let troubled = |start_ms: i64| (start + 40_000..start + 100_000).contains(&start_ms);
    for track in &published {
        let upstream = samples_of(&calls, track, telemetry_core::proto::StreamType::Upstream);
        assert!(upstream.iter().filter(|s| troubled(s.1)).count() >= 10, "{upstream:?}");
        // A muted track sends nothing, and loses nothing.
        for (_, at, loss, _, _) in upstream.iter().filter(|s| s.3 > 0) {
            if troubled(*at) {
                assert!((loss - 20.0).abs() < 1.0, "20 % lost upstream at {at}: {loss}");
            } else {
                assert!(*loss < 13.0, "outside the trouble, at most a bad spell: {loss}");
            }
        }
        let downstream = samples_of(&calls, track, telemetry_core::proto::StreamType::Downstream);
        let subscribers: std::collections::BTreeSet<&str> =
            downstream.iter().filter(|s| troubled(s.1)).map(|s| s.0.as_str()).collect();
        assert!(!subscribers.is_empty() && !subscribers.contains(target.as_str()));
        for (_, at, loss, _, _) in downstream.iter().filter(|s| s.3 > 0) {
            if troubled(*at) {
                assert!(*loss >= 19.0, "the subscribers receive the loss at {at}: {loss}");
            }
        }
    }
    assert_eq!(calls, generate(&args, END), "deterministic for the seed");
}

#[test]
fn frozen_video_high_rtt_and_a_bad_downlink_show_in_the_targets_samples() {
    for (trouble, check) in [
        ("frozen-video:0.0@30s..90s", "frozen"),
        ("high-rtt:0.0@30s..90s", "rtt"),
        ("bad-downlink:0.0@30s..90s", "downlink"),
    ] {
        let args = trouble_args(trouble);
        let start = END.0 - 300_000;
        let target =
            crate::World::new(&args, UnixMillis(start)).troubles()[0].participant_sid.clone();
        let calls = generate(&args, END);
        let troubled = |start_ms: i64| (start + 30_000..start + 90_000).contains(&start_ms);
        let mut seen = 0;
        for call in &calls {
            let Some(telemetry_proto::v1::telemetry_call::Call::TrackStats(stats)) = &call.call
            else {
                continue;
            };
            let key = stats.key.as_ref().expect("key");
            let stat = stats.stat.as_ref().expect("stat");
            let Some(first) = stat.streams.first() else { continue };
            // Data and signalling samples carry no times.
            let Some(at) = first.start_time.map(|at| at.seconds * 1000) else { continue };
            if key.participant_id != target || !key.track || !troubled(at) {
                continue;
            }
            let upstream = key.stream_type == telemetry_core::proto::StreamType::Upstream as i32;
            let video = key.track_type == telemetry_core::proto::TrackType::Video as i32;
            match check {
                "frozen" if upstream && video => {
                    assert!(stat.streams.iter().all(|s| s.primary_bytes == 0 && s.frames == 0));
                    seen += 1;
                }
                "rtt" => {
                    assert!(stat.streams.iter().all(|s| s.rtt == 650));
                    seen += 1;
                }
                "downlink" if !upstream => {
                    assert!(stat.streams.iter().all(|s| s.jitter == 60_000), "{stat:?}");
                    seen += 1;
                }
                _ => {}
            }
        }
        assert!(seen >= 5, "{trouble}: {seen} troubled samples");
    }
}

#[test]
fn a_trouble_without_a_target_is_aimed_from_the_seed_and_checked_against_the_arguments() {
    let aimed = |seed: u64| {
        let args = SimulateArgs { seed, ..trouble_args("high-rtt@10s..20s") };
        let world = crate::World::new(&args, UnixMillis(0));
        let trouble = &world.troubles()[0];
        (trouble.room, trouble.participant)
    };
    assert_eq!(aimed(7), aimed(7), "the same seed, the same participant");
    let drawn: std::collections::BTreeSet<_> = (0..20).map(aimed).collect();
    assert!(drawn.len() > 1, "the seed decides: {drawn:?}");
    assert!(drawn.iter().all(|&(room, participant)| room < 2 && participant < 4));

    assert_eq!(trouble_args("high-rtt:1.3@10s..20s").check(), Ok(()));
    let error = trouble_args("high-rtt:2.0@10s..20s").check().expect_err("no room 2");
    assert!(
        error.contains("`--trouble` high-rtt:2.0@10s..20s: no participant 0 in room 2"),
        "{error}"
    );
    let error = trouble_args("high-rtt:0.4@10s..20s").check().expect_err("no participant 4");
    assert!(error.contains("`--participants` 4"), "{error}");
    let error = trouble_args("high-rtt@4m..6m").check().expect_err("too late");
    assert!(error.contains("ends after `--duration` (5m)"), "{error}");
}
