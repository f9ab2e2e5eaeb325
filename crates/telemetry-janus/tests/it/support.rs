//! What the tests share: the capture, a runner, and a checker of the call sequence's
//! consistency (the rules every sequence the adapter makes keeps, whatever the events).

use std::collections::{BTreeMap, BTreeSet};

use telemetry_core::{Call, Direction, UnixMillis};
use telemetry_janus::{AdapterConfig, Adapters, Applied, Emitted, Event, Micros, decode};

/// The capture's events, decoded.
pub(crate) fn capture() -> Vec<Event> {
    let text = include_str!("../data/capture-echotest-videoroom.jsonl");
    text.lines()
        .enumerate()
        .map(|(line, text)| {
            let value: serde_json::Value = serde_json::from_str(text).expect("a JSON line");
            decode(&value).unwrap_or_else(|error| panic!("line {}: {error}", line + 1))
        })
        .collect()
}

/// What a run made.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) calls: Vec<Emitted>,
    pub(crate) accepted: usize,
    pub(crate) ignored: usize,
    pub(crate) rejected: Vec<String>,
}

impl Run {
    pub(crate) fn apply(&mut self, adapters: &mut Adapters, events: &[Event]) {
        for event in events {
            match adapters.apply(event, &mut self.calls) {
                Ok(Applied::Accepted) => self.accepted += 1,
                Ok(Applied::Ignored) => self.ignored += 1,
                Err(error) => self.rejected.push(error.to_string()),
            }
        }
    }
}

/// Runs `events` through fresh adapters, then lets a day pass.
pub(crate) fn run(events: &[Event]) -> (Run, Adapters) {
    let mut adapters = Adapters::new(AdapterConfig::default());
    let mut run = Run::default();
    run.apply(&mut adapters, events);
    let end = events.iter().map(|event| event.timestamp).max().unwrap_or(0);
    adapters.tick(millis(end + 86_400_000_000), &mut run.calls);
    (run, adapters)
}

pub(crate) fn millis(at: Micros) -> UnixMillis {
    UnixMillis((at / 1000) as i64)
}

/// Bytes sampled, by participant, track and direction.
pub(crate) fn sampled_bytes(calls: &[Emitted]) -> BTreeMap<(String, String, Direction), u64> {
    let mut bytes = BTreeMap::new();
    for emitted in calls {
        if let Call::TrackStats { key, stat, .. } = &emitted.call {
            *bytes
                .entry((key.participant_id.clone(), key.track_id.clone(), key.stream_type))
                .or_default() +=
                stat.streams.iter().map(|stream| stream.primary_bytes).sum::<u64>();
        }
    }
    bytes
}

/// Checks the rules every call sequence keeps: rooms start before anything happens in them and
/// nothing happens after they end; participants join before anything of theirs, once, and
/// nothing of theirs but the last reports of their handles follows their leave; tracks are
/// published by joined participants; a sample covers a positive interval of at most 5 minutes,
/// for a participant that joined its room. With `complete`, everything started has ended too.
pub(crate) fn check_consistency(calls: &[Emitted], complete: bool) {
    let mut rooms_open: BTreeSet<String> = BTreeSet::new();
    let mut rooms_ended: BTreeSet<String> = BTreeSet::new();
    let mut in_room: BTreeMap<String, String> = BTreeMap::new();
    let mut left: BTreeSet<String> = BTreeSet::new();
    // Every participant that joined, with its room: a handle's last reports may follow its leave.
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    let mut tracks: BTreeSet<String> = BTreeSet::new();
    for (index, emitted) in calls.iter().enumerate() {
        let here = || format!("call {index}: {:?}", emitted.call);
        let open = |room: &str| {
            assert!(rooms_open.contains(room), "{}: room `{room}` is not open", here());
        };
        match &emitted.call {
            Call::RoomStarted { room } => {
                assert!(!rooms_ended.contains(&room.sid), "{}: restarted", here());
                assert!(rooms_open.insert(room.sid.clone()), "{}: started twice", here());
            }
            Call::RoomEnded { room } => {
                open(&room.sid);
                assert!(
                    !in_room.values().any(|sid| *sid == room.sid),
                    "{}: ended with participants in it",
                    here()
                );
                rooms_open.remove(&room.sid);
                rooms_ended.insert(room.sid.clone());
            }
            Call::ParticipantJoined { room, participant, .. } => {
                open(&room.sid);
                assert!(!left.contains(&participant.sid), "{}: rejoined", here());
                joined.insert(participant.sid.clone(), room.sid.clone());
                assert!(
                    in_room.insert(participant.sid.clone(), room.sid.clone()).is_none(),
                    "{}: joined twice",
                    here()
                );
            }
            Call::ParticipantActive { room, participant, .. } => {
                assert_eq!(in_room.get(&participant.sid), Some(&room.sid), "{}", here());
            }
            Call::ParticipantLeft { room, participant, .. } => {
                assert_eq!(in_room.remove(&participant.sid), Some(room.sid.clone()), "{}", here());
                left.insert(participant.sid.clone());
            }
            Call::TrackPublished { room, participant_id, track, .. } => {
                assert_eq!(in_room.get(participant_id), Some(&room.sid), "{}", here());
                assert!(tracks.insert(track.sid.clone()), "{}: published twice", here());
            }
            Call::TrackUnpublished { room, participant_id, track, .. } => {
                assert_eq!(in_room.get(participant_id), Some(&room.sid), "{}", here());
                assert!(tracks.remove(&track.sid), "{}: not published", here());
            }
            Call::TrackStats { room_id, key, stat, .. } => {
                assert_eq!(joined.get(&key.participant_id), Some(room_id), "{}", here());
                assert_eq!(stat.streams.len(), 1);
                let stream = &stat.streams[0];
                let start = UnixMillis::from_timestamp(stream.start_time.as_ref().expect("start"))
                    .expect("a time");
                let end = UnixMillis::from_timestamp(stream.end_time.as_ref().expect("end"))
                    .expect("a time");
                assert!(start <= end && end.0 - start.0 <= 300_000, "{}", here());
                assert_eq!(end, emitted.at, "{}", here());
                assert!(stream.primary_packets <= i32::MAX as u32, "{}", here());
            }
            other => panic!("call {index}: the adapter makes no `{}`", other.method_name()),
        }
    }
    if complete {
        assert!(rooms_open.is_empty(), "rooms never ended: {rooms_open:?}");
        assert!(in_room.is_empty(), "participants never left: {in_room:?}");
        assert!(tracks.is_empty(), "tracks never unpublished: {tracks:?}");
    }
}
