//! The Janus adapter's state machine: an `arbitrary` sequence of events (taken from the capture,
//! in any order and with shifted times, or made from small alphabets of sessions, handles,
//! feeds, rooms and mids so that they collide: sessions and handles created and destroyed,
//! VideoRoom joins, publications, subscriptions and leaves, PeerConnections up and down, ICE
//! states, media counters that rise, repeat and fall, Janus restarts), the passing of time, and
//! restarts of the service (the states handed out, kept as the store keeps them, newest
//! generation first, restored into new adapters).
//!
//! Checked after every step: no panic; every call passes the checks of every ingested call
//! (`ingest::janus::check_call`); rooms start before anything happens in them and end once;
//! participants join once, before anything of theirs, and leave once; tracks are published by
//! participants in the room and unpublished once; a sample covers at most 5 minutes for a
//! participant that joined its room; across restarts too (the restored adapter keeps every
//! sid). At the end, a day later, every room has ended, every participant left, every track was
//! unpublished, and the adapters hold nothing.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use telemetry_core::{Call, UnixMillis};
use telemetry_janus::{AdapterConfig, Adapters, Emitted};
use telemetry_server::ingest::janus::check_call;
use telemetry_server::ingest::validate::{Checker, Limits};

const EMITTER: &str = "janus-probe";
const PLUGINS: [&str; 3] =
    ["janus.plugin.videoroom", "janus.plugin.echotest", "janus.plugin.streaming"];
const ICE: [&str; 5] = ["gathering", "connecting", "connected", "ready", "failed"];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The capture's event at this index (modulo its length), at the current time.
    Capture(u16),
    /// A made event, this many milliseconds after the previous one.
    Made(Made, u16),
    /// Time passes for the adapters' timer: this many seconds.
    Tick(u16),
    /// The service restarts: the states handed out are restored into new adapters.
    Restart,
}

#[derive(Arbitrary, Debug)]
struct Made {
    kind: Kind,
    session: u8,
    handle: u8,
    feed: u8,
    room: u8,
    mid: u8,
    /// Media counters, or the index of an ICE state or a plugin.
    value: u32,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Created,
    Destroyed,
    Attached,
    Detached,
    WebrtcUp,
    Hangup,
    Ice,
    Joined,
    Published,
    Unpublished,
    Leaving,
    Subscribing,
    Stats,
    RoomCreated,
    RoomDestroyed,
    CoreStarted,
}

fn made(event: &Made, at: u64) -> Value {
    let session = u64::from(event.session % 3) + 1;
    let handle = session * 100 + u64::from(event.handle % 3);
    let feed = u64::from(event.feed % 3) + 1000;
    let room = u64::from(event.room % 2) + 1;
    let mid = (event.mid % 3).to_string();
    let ids = json!({"session_id": session, "handle_id": handle});
    let videoroom = |data: Value, bound: bool| {
        let mut value = json!({"type": 64, "event": {"plugin": PLUGINS[0], "data": data}});
        if bound {
            value["session_id"] = ids["session_id"].clone();
            value["handle_id"] = ids["handle_id"].clone();
        }
        value
    };
    let mut value = match event.kind {
        Kind::Created => json!({"type": 1, "session_id": session, "event": {"name": "created"}}),
        Kind::Destroyed => {
            json!({"type": 1, "session_id": session, "event": {"name": "destroyed"}})
        }
        Kind::Attached => json!({"type": 2, "session_id": session, "handle_id": handle,
            "event": {"name": "attached", "plugin": PLUGINS[event.value as usize % 3]}}),
        Kind::Detached => json!({"type": 2, "session_id": session, "handle_id": handle,
            "event": {"name": "detached", "plugin": PLUGINS[0]}}),
        Kind::WebrtcUp => json!({"type": 16, "subtype": 6, "session_id": session,
            "handle_id": handle, "event": {"connection": "webrtcup"}}),
        Kind::Hangup => json!({"type": 16, "subtype": 6, "session_id": session,
            "handle_id": handle, "event": {"connection": "hangup", "reason": "fuzz"}}),
        Kind::Ice => json!({"type": 16, "subtype": 1, "session_id": session, "handle_id": handle,
            "event": {"ice": ICE[event.value as usize % ICE.len()]}}),
        Kind::Joined => videoroom(
            json!({"event": "joined", "room": room, "id": feed, "display": format!("user-{feed}")}),
            true,
        ),
        Kind::Published => videoroom(
            json!({"event": "published", "room": room, "id": feed, "streams": [
                {"type": "audio", "mid": "0", "codec": "opus"},
                {"type": "video", "mid": mid, "codec": "vp8"}]}),
            true,
        ),
        Kind::Unpublished => {
            videoroom(json!({"event": "unpublished", "room": room, "id": feed}), false)
        }
        Kind::Leaving => videoroom(json!({"event": "leaving", "room": room, "id": feed}), false),
        Kind::Subscribing => videoroom(
            json!({"event": "subscribing", "room": room, "streams": [
                {"type": "video", "mid": mid, "feed_id": feed, "feed_mid": "1"},
                {"type": "data", "mid": "9", "feed_id": feed, "feed_mid": "2"}]}),
            true,
        ),
        Kind::Stats => {
            let bytes = u64::from(event.value);
            let media = ["audio", "video", "data"][usize::from(event.mid % 3)];
            json!({"type": 32, "subtype": 3, "session_id": session, "handle_id": handle,
                "event": {"mid": mid, "media": media,
                "codec": "vp8", "rtt": event.value % 50, "jitter-local": event.value % 9,
                "in-media-link-quality": event.value % 101,
                "bytes-received": bytes, "packets-received": bytes / 1000,
                "bytes-sent": bytes / 2, "packets-sent": bytes / 2000, "lost": event.value % 7}})
        }
        Kind::RoomCreated => videoroom(json!({"event": "created", "room": room}), false),
        Kind::RoomDestroyed => videoroom(json!({"event": "destroyed", "room": room}), false),
        Kind::CoreStarted => json!({"type": 256, "subtype": 1, "event": {"status": "started"}}),
    };
    value["emitter"] = json!(EMITTER);
    value["timestamp"] = json!(at);
    value
}

/// What the calls so far say exists.
#[derive(Default)]
struct Model {
    rooms_open: BTreeSet<String>,
    rooms_ended: BTreeSet<String>,
    in_room: BTreeMap<String, String>,
    joined: BTreeMap<String, String>,
    left: BTreeSet<String>,
    tracks: BTreeSet<String>,
}

impl Model {
    fn check(&mut self, emitted: &Emitted, limits: &Limits) {
        let checker = Checker::new(limits, emitted.at);
        check_call(&checker, &emitted.call).unwrap_or_else(|error| {
            panic!("a call the checks refuse: {error}: {:?}", emitted.call)
        });
        match &emitted.call {
            Call::RoomStarted { room } => {
                assert!(!self.rooms_ended.contains(&room.sid), "a room started again");
                assert!(self.rooms_open.insert(room.sid.clone()), "a room started twice");
            }
            Call::RoomEnded { room } => {
                assert!(self.rooms_open.remove(&room.sid), "a room ended that was not open");
                assert!(!self.in_room.values().any(|sid| *sid == room.sid), "ended with people");
                self.rooms_ended.insert(room.sid.clone());
            }
            Call::ParticipantJoined { room, participant, .. } => {
                assert!(self.rooms_open.contains(&room.sid), "joined a room not open");
                assert!(!self.left.contains(&participant.sid), "rejoined");
                assert!(self.in_room.insert(participant.sid.clone(), room.sid.clone()).is_none());
                self.joined.insert(participant.sid.clone(), room.sid.clone());
            }
            Call::ParticipantActive { room, participant, .. } => {
                assert_eq!(self.in_room.get(&participant.sid), Some(&room.sid));
            }
            Call::ParticipantLeft { room, participant, .. } => {
                assert_eq!(self.in_room.remove(&participant.sid), Some(room.sid.clone()));
                self.left.insert(participant.sid.clone());
            }
            Call::TrackPublished { room, participant_id, track, .. } => {
                assert_eq!(self.in_room.get(participant_id), Some(&room.sid));
                assert!(self.tracks.insert(track.sid.clone()), "published twice");
            }
            Call::TrackUnpublished { room, participant_id, track, .. } => {
                assert_eq!(self.in_room.get(participant_id), Some(&room.sid));
                assert!(self.tracks.remove(&track.sid), "unpublished twice");
            }
            Call::TrackStats { room_id, key, stat, .. } => {
                assert_eq!(self.joined.get(&key.participant_id), Some(room_id));
                for stream in &stat.streams {
                    let time = |t: &Option<_>| {
                        UnixMillis::from_timestamp(t.as_ref().expect("a time")).expect("valid")
                    };
                    let (start, end) = (time(&stream.start_time), time(&stream.end_time));
                    assert!(start <= end && end.0 - start.0 <= 300_000, "{start:?} {end:?}");
                }
            }
            other => panic!("the adapter makes no `{}`", other.method_name()),
        }
    }
}

/// The capture's events, read once.
fn capture() -> &'static [Value] {
    static CAPTURE: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        rtc_telemetry_fuzz::JANUS_CAPTURE
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    })
}

fuzz_target!(|ops: Vec<Op>| {
    let capture = capture();
    let mut at: u64 = capture[0]["timestamp"].as_u64().expect("a timestamp");
    let limits = Limits { max_age_millis: i64::MAX, ..Limits::default() };
    let mut adapters = Adapters::new(AdapterConfig::default());
    let mut model = Model::default();
    let mut calls = Vec::new();
    let mut stored: BTreeMap<String, telemetry_janus::Snapshot> = BTreeMap::new();
    for op in ops.into_iter().take(512) {
        match op {
            Op::Capture(index) => {
                let mut value = capture[usize::from(index) % capture.len()].clone();
                at += 1;
                value["timestamp"] = json!(at);
                let event = telemetry_janus::decode(&value).expect("the capture decodes");
                let _ = adapters.apply(&event, &mut calls);
            }
            Op::Made(event, millis) => {
                at += u64::from(millis) * 1000;
                let value = made(&event, at);
                let event = telemetry_janus::decode(&value)
                    .unwrap_or_else(|error| panic!("a made event decodes: {error}: {value}"));
                let _ = adapters.apply(&event, &mut calls);
            }
            Op::Tick(seconds) => {
                at += u64::from(seconds) * 1_000_000;
                adapters.tick(UnixMillis((at / 1000) as i64), &mut calls);
            }
            Op::Restart => {
                adapters = Adapters::new(AdapterConfig::default());
                for snapshot in stored.values() {
                    adapters
                        .restore(snapshot, UnixMillis((at / 1000) as i64))
                        .expect("a state the adapter handed out restores");
                }
            }
        }
        for emitted in calls.drain(..) {
            model.check(&emitted, &limits);
        }
        // What the service writes after each request, kept as the store keeps it: a Janus
        // server's state replaces the stored one only if its generation is higher.
        for snapshot in adapters.take_snapshots() {
            match stored.get(&snapshot.emitter) {
                Some(kept) if kept.generation >= snapshot.generation => {}
                _ => {
                    stored.insert(snapshot.emitter.clone(), snapshot);
                }
            }
        }
    }
    adapters.tick(UnixMillis((at / 1000) as i64 + 86_400_000), &mut calls);
    for emitted in calls.drain(..) {
        model.check(&emitted, &limits);
    }
    assert!(model.rooms_open.is_empty(), "rooms never ended: {:?}", model.rooms_open);
    assert!(model.in_room.is_empty(), "participants never left: {:?}", model.in_room);
    assert!(model.tracks.is_empty(), "tracks never unpublished: {:?}", model.tracks);
    assert_eq!(adapters.sizes(), (0, 0), "the adapters hold nothing a day later");
});
