//! The real capture, replayed: the rooms, participants, tracks and stats it must give.

use std::collections::BTreeMap;

use telemetry_core::{Call, Direction};
use telemetry_janus::event::Body;

use crate::support::{capture, check_consistency, run, sampled_bytes};

#[test]
fn the_capture_gives_its_rooms_participants_and_tracks() {
    let events = capture();
    assert_eq!(events.len(), 641);
    let (run, adapters) = run(&events);
    assert!(run.rejected.is_empty(), "{:?}", run.rejected);
    assert_eq!(run.accepted + run.ignored, 641);
    check_consistency(&run.calls, true);
    assert!(adapters.is_empty() || adapters.get("janus-probe").is_some_and(|a| a.is_empty()));

    let mut lifecycle = Vec::new();
    for emitted in &run.calls {
        let line = match &emitted.call {
            Call::RoomStarted { room } => format!("roomStarted {}", room.name),
            Call::RoomEnded { room } => format!("roomEnded {}", room.name),
            Call::ParticipantJoined { room, participant, .. } => {
                format!("participantJoined {} {}", room.name, participant.identity)
            }
            Call::ParticipantActive { participant, .. } => {
                format!("participantActive {}", participant.identity)
            }
            Call::ParticipantLeft { participant, .. } => {
                format!("participantLeft {}", participant.identity)
            }
            Call::TrackPublished { identity, track, .. } => {
                format!("trackPublished {identity} {}", track.mime_type)
            }
            Call::TrackUnpublished { identity, track, .. } => {
                format!("trackUnpublished {identity} {}", track.mime_type)
            }
            _ => continue,
        };
        lifecycle.push(line);
    }
    assert_eq!(
        lifecycle,
        [
            "roomStarted echotest-499838862650198",
            "participantJoined echotest-499838862650198 echotest-hEMM9HBECXpH",
            "participantActive echotest-hEMM9HBECXpH",
            "trackPublished echotest-hEMM9HBECXpH audio/opus",
            "trackPublished echotest-hEMM9HBECXpH video/VP8",
            // `destroyed` of the session comes before `detached` of its handle.
            "trackUnpublished echotest-hEMM9HBECXpH audio/opus",
            "trackUnpublished echotest-hEMM9HBECXpH video/VP8",
            "participantLeft echotest-hEMM9HBECXpH",
            "roomEnded echotest-499838862650198",
            "roomStarted 1234",
            "participantJoined 1234 probe0",
            "trackPublished probe0 audio/opus",
            "trackPublished probe0 video/VP8",
            "participantActive probe0",
            "participantJoined 1234 probe1",
            "trackPublished probe1 audio/opus",
            "trackPublished probe1 video/VP8",
            "participantActive probe1",
            "trackUnpublished probe1 audio/opus",
            "trackUnpublished probe1 video/VP8",
            "participantLeft probe1",
            "trackUnpublished probe0 audio/opus",
            "trackUnpublished probe0 video/VP8",
            "participantLeft probe0",
            // Janus's `shutdown` ends the room before its idle timeout would have.
            "roomEnded 1234",
        ]
    );
}

/// Per handle, mid and direction: the last counter value (counters start at zero at `webrtcup`).
fn last_counters(events: &[telemetry_janus::Event]) -> BTreeMap<(u64, String, Direction), u64> {
    let mut last = BTreeMap::new();
    for event in events {
        if let Body::MediaStats(reports) = &event.body {
            for report in reports {
                let handle = event.handle_id.expect("a handle");
                for (direction, bytes) in [
                    (Direction::Upstream, report.bytes_received),
                    (Direction::Downstream, report.bytes_sent),
                ] {
                    let value = last.entry((handle, report.mid.clone(), direction)).or_insert(0);
                    *value = (*value).max(bytes);
                }
            }
        }
    }
    last
}

#[test]
fn every_byte_janus_counted_is_sampled_once_in_the_direction_its_handle_measures() {
    let events = capture();
    let (run, _) = run(&events);
    let sampled = sampled_bytes(&run.calls);
    let last = last_counters(&events);
    let total = |direction: Direction, handles: &[u64]| -> u64 {
        last.iter()
            .filter(|((handle, _, d), _)| *d == direction && handles.contains(handle))
            .map(|(_, bytes)| bytes)
            .sum()
    };
    let sampled_total = |direction: Direction| -> u64 {
        sampled.iter().filter(|((_, _, d), _)| *d == direction).map(|(_, bytes)| bytes).sum()
    };
    // EchoTest: both directions on its handle; VideoRoom: upstream on the publishers' handles,
    // downstream on the subscribers'.
    let (echotest, publishers, subscribers) = (
        499_838_862_650_198,
        [1_678_826_816_354_394, 3_884_422_656_904_538],
        [6_541_108_807_772_376, 4_825_498_680_608_566],
    );
    let upstream = total(Direction::Upstream, &[echotest, publishers[0], publishers[1]]);
    let downstream = total(Direction::Downstream, &[echotest, subscribers[0], subscribers[1]]);
    assert_eq!(sampled_total(Direction::Upstream), upstream);
    assert_eq!(sampled_total(Direction::Downstream), downstream);
    // About 1,800 video packets each way in 30 s of EchoTest: hundreds of kilobits per second.
    assert!(upstream > 2_500_000 && downstream > 2_500_000, "{upstream} {downstream}");
}

#[test]
fn each_subscribers_downstream_is_on_a_track_the_other_participant_published() {
    let (run, _) = run(&capture());
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    let mut identities: BTreeMap<String, String> = BTreeMap::new();
    for emitted in &run.calls {
        match &emitted.call {
            Call::TrackPublished { participant_id, track, .. } => {
                published.insert(track.sid.clone(), participant_id.clone());
            }
            Call::ParticipantJoined { participant, .. } => {
                identities.insert(participant.sid.clone(), participant.identity.clone());
            }
            _ => {}
        }
    }
    let mut seen = 0;
    for emitted in &run.calls {
        if let Call::TrackStats { room_name, key, .. } = &emitted.call
            && key.stream_type == Direction::Downstream
            && room_name == "1234"
        {
            let publisher = published.get(&key.track_id).expect("a published track");
            assert_ne!(publisher, &key.participant_id, "a subscriber receives another's track");
            assert!(key.track, "media");
            seen += 1;
        }
    }
    assert!(seen > 20, "{seen} downstream samples");
    assert_eq!(identities.values().filter(|identity| identity.starts_with("probe")).count(), 2);
}
