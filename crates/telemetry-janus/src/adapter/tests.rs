//! Tests of the mapping, one behaviour each, on events written the way Janus writes them.

use std::time::Duration;

use serde_json::{Value, json};
use telemetry_core::proto as lk;

use super::*;
use crate::config::AdapterLimits;
use crate::event::decode;

const EMITTER: &str = "janus-test";
const T0: Micros = 1_795_510_450_000_000;
const SECOND: Micros = 1_000_000;
const ROOM: u64 = 1234;

/// A VideoRoom publisher: session, publisher handle, feed.
const PUB: (u64, u64, u64) = (11, 111, 1111);
/// A second participant: session, publisher handle, feed; and its subscriber handle.
const OTHER: (u64, u64, u64) = (22, 222, 2222);
const OTHER_SUB: u64 = 223;

fn event(value: Value) -> Event {
    let mut value = value;
    value["emitter"] = json!(EMITTER);
    decode(&value).unwrap_or_else(|error| panic!("{value}: {error}"))
}

fn created(at: Micros, session: u64) -> Event {
    event(json!({"type": 1, "timestamp": at, "session_id": session, "event": {"name": "created"}}))
}

fn destroyed(at: Micros, session: u64) -> Event {
    event(
        json!({"type": 1, "timestamp": at, "session_id": session, "event": {"name": "destroyed"}}),
    )
}

fn attached(at: Micros, session: u64, handle: u64, plugin: &str) -> Event {
    event(json!({"type": 2, "timestamp": at, "session_id": session, "handle_id": handle,
        "opaque_id": format!("app-{session}"),
        "event": {"name": "attached", "plugin": plugin, "opaque_id": format!("app-{session}")}}))
}

fn detached(at: Micros, session: u64, handle: u64) -> Event {
    event(json!({"type": 2, "timestamp": at, "session_id": session, "handle_id": handle,
        "event": {"name": "detached", "plugin": VIDEOROOM}}))
}

fn connection(at: Micros, session: u64, handle: u64, what: &str) -> Event {
    event(json!({"type": 16, "subtype": 6, "timestamp": at, "session_id": session,
        "handle_id": handle, "event": {"connection": what, "reason": "test"}}))
}

fn ice(at: Micros, session: u64, handle: u64, state: &str) -> Event {
    event(json!({"type": 16, "subtype": 1, "timestamp": at, "session_id": session,
        "handle_id": handle, "event": {"ice": state, "stream_id": 1, "component_id": 1}}))
}

fn videoroom(at: Micros, ids: Option<(u64, u64)>, data: Value) -> Event {
    let mut value = json!({"type": 64, "timestamp": at,
        "event": {"plugin": VIDEOROOM, "data": data}});
    if let Some((session, handle)) = ids {
        value["session_id"] = json!(session);
        value["handle_id"] = json!(handle);
    }
    event(value)
}

fn joined(at: Micros, (session, handle, feed): (u64, u64, u64), display: &str) -> Event {
    videoroom(
        at,
        Some((session, handle)),
        json!({"event": "joined", "room": ROOM, "id": feed, "private_id": 5, "display": display}),
    )
}

fn published(at: Micros, (session, handle, feed): (u64, u64, u64)) -> Event {
    videoroom(
        at,
        Some((session, handle)),
        json!({"event": "published", "room": ROOM, "id": feed, "streams": [
            {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
            {"type": "video", "mindex": 1, "mid": "1", "codec": "vp8"}]}),
    )
}

fn subscribing(at: Micros, session: u64, handle: u64, feed: u64) -> Event {
    videoroom(
        at,
        Some((session, handle)),
        json!({"event": "subscribing", "room": ROOM, "streams": [
            {"type": "audio", "mindex": 0, "mid": "0", "feed_id": feed, "feed_mid": "0", "codec": "opus"},
            {"type": "video", "mindex": 1, "mid": "1", "feed_id": feed, "feed_mid": "1", "codec": "vp8"}]}),
    )
}

fn leaving(at: Micros, feed: u64) -> Event {
    videoroom(at, None, json!({"event": "leaving", "room": ROOM, "id": feed}))
}

fn unpublished(at: Micros, feed: u64) -> Event {
    videoroom(at, None, json!({"event": "unpublished", "room": ROOM, "id": feed}))
}

/// A video report: `received` and `sent` bytes, a packet per 1,000 bytes.
fn stats(at: Micros, session: u64, handle: u64, received: u64, sent: u64) -> Event {
    event(json!({"type": 32, "subtype": 3, "timestamp": at, "session_id": session,
        "handle_id": handle, "event": {"mid": "1", "mindex": 1, "media": "video", "codec": "vp8",
        "base": 90000, "rtt": 2, "lost": 0, "lost-by-remote": 0, "jitter-local": 1,
        "jitter-remote": 3, "in-media-link-quality": 100, "out-media-link-quality": 80,
        "packets-received": received / 1000, "packets-sent": sent / 1000,
        "bytes-received": received, "bytes-sent": sent, "nacks-received": 0, "nacks-sent": 0}}))
}

struct Harness {
    adapter: Adapter,
    calls: Vec<Emitted>,
}

impl Harness {
    fn new() -> Self {
        Self::with(AdapterConfig::default())
    }

    fn with(config: AdapterConfig) -> Self {
        Self { adapter: Adapter::new(EMITTER, config), calls: Vec::new() }
    }

    fn apply(&mut self, event: &Event) -> Applied {
        self.adapter.apply(event, &mut self.calls).unwrap_or_else(|error| panic!("{error}"))
    }

    fn apply_all(&mut self, events: &[Event]) {
        for event in events {
            self.apply(event);
        }
    }

    /// Applies `event`, which must be refused with an error naming `field`.
    fn refused_naming(&mut self, event: &Event, field: &str) {
        let error = self.adapter.apply(event, &mut self.calls).expect_err("refused");
        assert!(error.to_string().contains(field), "{error}");
    }

    /// A harness whose adapter is restored from `snapshot` at `at`.
    fn restored(snapshot: &Snapshot, at: Micros) -> Self {
        let adapter =
            Adapter::restore(snapshot, AdapterConfig::default(), millis(at)).expect("restores");
        Self { adapter, calls: Vec::new() }
    }

    fn tick(&mut self, at: Micros) {
        self.adapter.tick(millis(at), &mut self.calls);
    }

    /// The calls made since the last call of this, summarized.
    fn take(&mut self) -> Vec<String> {
        self.calls.drain(..).map(|emitted| summary(&emitted)).collect()
    }
}

/// One line per call: its method, the names in it, and for stats its numbers.
fn summary(emitted: &Emitted) -> String {
    let at = emitted.at.0 - (T0 / 1000) as i64;
    match &emitted.call {
        Call::RoomStarted { room } => format!("{at} roomStarted {}", room.name),
        Call::RoomEnded { room } => format!("{at} roomEnded {}", room.name),
        Call::ParticipantJoined { room, participant, .. } => {
            format!("{at} participantJoined {} {}", room.name, participant.identity)
        }
        Call::ParticipantActive { participant, .. } => {
            format!("{at} participantActive {}", participant.identity)
        }
        Call::ParticipantLeft { participant, .. } => {
            format!("{at} participantLeft {}", participant.identity)
        }
        Call::TrackPublished { identity, track, .. } => {
            format!("{at} trackPublished {identity} {} {}", track.mid, track.mime_type)
        }
        Call::TrackUnpublished { identity, track, .. } => {
            format!("{at} trackUnpublished {identity} {}", track.mid)
        }
        Call::TrackStats { key, stat, .. } => {
            let stream = &stat.streams[0];
            let start = UnixMillis::from_timestamp(stream.start_time.as_ref().expect("start"))
                .expect("a time");
            let end =
                UnixMillis::from_timestamp(stream.end_time.as_ref().expect("end")).expect("a time");
            format!(
                "{at} trackStats {} {} bytes={} packets={} over={}ms",
                key.stream_type.as_str(),
                stat.mime,
                stream.primary_bytes,
                stream.primary_packets,
                end.0 - start.0
            )
        }
        other => format!("{at} {}", other.method_name()),
    }
}

/// The publisher of [`publisher_call`] unpublishes and leaves at 10 s: its two tracks end, then
/// it leaves.
fn publisher_leaves(h: &mut Harness) {
    h.apply_all(&[unpublished(T0 + 10 * SECOND, PUB.2), leaving(T0 + 10 * SECOND + 1, PUB.2)]);
    assert_eq!(
        h.take(),
        [
            "10000 trackUnpublished probe0 0",
            "10000 trackUnpublished probe0 1",
            "10000 participantLeft probe0",
        ]
    );
}

fn publisher_call(h: &mut Harness) {
    h.apply_all(&[
        created(T0, PUB.0),
        attached(T0 + 10_000, PUB.0, PUB.1, VIDEOROOM),
        joined(T0 + 20_000, PUB, "probe0"),
        published(T0 + 400_000, PUB),
        connection(T0 + 401_000, PUB.0, PUB.1, "webrtcup"),
    ]);
}

#[test]
fn a_videoroom_publisher_joins_publishes_streams_leaves_and_the_room_finishes_after_its_idle_timeout()
 {
    let mut h = Harness::new();
    publisher_call(&mut h);
    assert_eq!(
        h.take(),
        [
            "20 roomStarted 1234",
            "20 participantJoined 1234 probe0",
            "400 trackPublished probe0 0 audio/opus",
            "400 trackPublished probe0 1 video/VP8",
            "401 participantActive probe0",
        ]
    );
    h.apply_all(&[
        stats(T0 + 2 * SECOND + 401_000, PUB.0, PUB.1, 100_000, 50),
        stats(T0 + 4 * SECOND + 401_000, PUB.0, PUB.1, 300_000, 90),
    ]);
    // Counted from `webrtcup`; only what the publisher sends (upstream), on its video track.
    assert_eq!(
        h.take(),
        [
            "2401 trackStats upstream video/VP8 bytes=100000 packets=100 over=2000ms",
            "4401 trackStats upstream video/VP8 bytes=200000 packets=200 over=2000ms",
        ]
    );
    h.apply_all(&[
        unpublished(T0 + 10 * SECOND, PUB.2),
        leaving(T0 + 10 * SECOND + 1, PUB.2),
        detached(T0 + 10 * SECOND + 2, PUB.0, PUB.1),
        destroyed(T0 + 11 * SECOND, PUB.0),
    ]);
    assert_eq!(
        h.take(),
        [
            "10000 trackUnpublished probe0 0",
            "10000 trackUnpublished probe0 1",
            "10000 participantLeft probe0",
        ]
    );
    h.tick(T0 + 39 * SECOND);
    assert!(h.take().is_empty(), "the room waits `room_idle_timeout`");
    h.tick(T0 + 41 * SECOND);
    assert_eq!(h.take(), ["40000 roomEnded 1234"]);
    assert!(h.adapter.is_empty());
}

/// Found by the `janus_adapter` fuzz target: a second session joining a room as a feed id
/// another live session holds there (Janus itself refuses that) published the same track sids
/// twice. It is refused, naming the field, and changes nothing; the feed's own session goes on.
#[test]
fn a_second_session_joining_as_a_feed_another_holds_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.take();
    let other = (22, 222, PUB.2);
    h.apply(&created(T0 + SECOND, other.0));
    h.apply(&attached(T0 + SECOND, other.0, other.1, VIDEOROOM));
    h.refused_naming(&joined(T0 + 2 * SECOND, other, "intruder"), "event.data.id");
    h.refused_naming(&published(T0 + 3 * SECOND, other), "event.data.id");
    assert!(h.take().is_empty(), "no call for the refused session");
    publisher_leaves(&mut h);
}

/// Found by the `janus_adapter` fuzz target too: the publisher's session joining its room again
/// as another feed (from another handle) replaced its feed while its first feed's tracks stayed
/// published, and a later session joining as the first feed published the same track sids
/// again. A second feed of a session in a room is refused; the first feed is left as it was, and
/// another session may not take it.
#[test]
fn a_session_joining_its_room_again_as_another_feed_is_refused() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.take();
    h.apply(&attached(T0 + SECOND, PUB.0, PUB.1 + 1, VIDEOROOM));
    h.refused_naming(
        &joined(T0 + 2 * SECOND, (PUB.0, PUB.1 + 1, PUB.2 + 1), "again"),
        "event.data.id",
    );
    let other = (22, 222, PUB.2);
    h.apply(&created(T0 + 3 * SECOND, other.0));
    h.apply(&attached(T0 + 3 * SECOND, other.0, other.1, VIDEOROOM));
    // The first feed is still PUB's.
    h.refused_naming(&published(T0 + 4 * SECOND, other), "event.data.id");
    assert!(h.take().is_empty());
    publisher_leaves(&mut h);
}

/// Found by the `janus_adapter` fuzz target: a room destroyed and created again in the same
/// microsecond (or after the server's clock was set back) derived the sid of the room that had
/// ended. Each room of a server now starts strictly after the one started last, so every room
/// has a sid of its own, and that order survives a restore.
#[test]
fn a_room_started_again_in_the_microsecond_it_ended_has_a_sid_of_its_own() {
    let mut h = Harness::new();
    let room = |what: &str, at: Micros| videoroom(at, None, json!({"event": what, "room": 1234}));
    let sids = |h: &mut Harness| -> Vec<(String, String)> {
        h.calls
            .drain(..)
            .filter_map(|emitted| match emitted.call {
                Call::RoomStarted { room } => Some(("started".to_owned(), room.sid)),
                Call::RoomEnded { room } => Some(("ended".to_owned(), room.sid)),
                _ => None,
            })
            .collect()
    };
    h.apply_all(&[room("created", T0), room("destroyed", T0), room("created", T0)]);
    let first = sids(&mut h);
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[0].1, first[1].1, "the first room ends");
    assert_ne!(first[2].1, first[0].1, "the second room has a sid of its own");
    // The clock set back, across a restore: still a new sid.
    let snapshot = h.adapter.take_snapshot().expect("a snapshot");
    let mut restored = Harness::restored(&snapshot, T0);
    restored.apply_all(&[room("destroyed", T0), room("created", T0 - SECOND)]);
    let again = sids(&mut restored);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again[1].1 != first[0].1 && again[1].1 != first[2].1, "{again:?}");
}

#[test]
fn a_session_that_joins_again_in_the_microsecond_it_left_is_a_participant_with_a_sid_of_its_own() {
    // Found by the `janus_adapter` fuzz target: a handle detached (its participant left) and
    // the same session joined the same room again at the same event time, and the second
    // participant got the first one's sid, so the core saw a participant that had left join.
    let mut h = Harness::new();
    let sids = |h: &mut Harness| -> Vec<(String, String)> {
        h.calls
            .drain(..)
            .filter_map(|emitted| match emitted.call {
                Call::ParticipantJoined { participant, .. } => {
                    Some(("joined".to_owned(), participant.sid))
                }
                Call::ParticipantLeft { participant, .. } => {
                    Some(("left".to_owned(), participant.sid))
                }
                _ => None,
            })
            .collect()
    };
    h.apply_all(&[
        created(T0, 1),
        attached(T0, 1, 100, "janus.plugin.videoroom"),
        joined(T0, (1, 100, 1000), "alice"),
        detached(T0, 1, 100),
        attached(T0, 1, 101, "janus.plugin.videoroom"),
        joined(T0, (1, 101, 1000), "alice"),
    ]);
    let first = sids(&mut h);
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[0].1, first[1].1, "the first participant leaves");
    assert_ne!(first[2].1, first[0].1, "the second has a sid of its own");
    // The clock set back, across a restore: still a new sid.
    let snapshot = h.adapter.take_snapshot().expect("a snapshot");
    let mut restored = Harness::restored(&snapshot, T0);
    restored.apply_all(&[
        detached(T0, 1, 101),
        attached(T0 - SECOND, 1, 102, "janus.plugin.videoroom"),
        joined(T0 - SECOND, (1, 102, 1000), "alice"),
    ]);
    let again = sids(&mut restored);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again[1].1 != first[0].1 && again[1].1 != first[2].1, "{again:?}");
}

#[test]
fn a_subscribers_downstream_is_reported_on_the_publishers_track() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.apply_all(&[
        created(T0 + SECOND, OTHER.0),
        attached(T0 + SECOND, OTHER.0, OTHER.1, VIDEOROOM),
        joined(T0 + SECOND, OTHER, ""),
        attached(T0 + SECOND, OTHER.0, OTHER_SUB, VIDEOROOM),
        subscribing(T0 + SECOND, OTHER.0, OTHER_SUB, PUB.2),
        connection(T0 + 2 * SECOND, OTHER.0, OTHER_SUB, "webrtcup"),
        stats(T0 + 4 * SECOND, OTHER.0, OTHER_SUB, 10, 40_000),
    ]);
    let lines = h.take();
    // No display name: the feed id is the identity; active with its subscriber's PeerConnection.
    assert!(lines.contains(&"1000 participantJoined 1234 2222".to_owned()), "{lines:?}");
    assert!(lines.contains(&"2000 participantActive 2222".to_owned()), "{lines:?}");
    assert_eq!(
        lines.last().expect("a sample"),
        "4000 trackStats downstream video/VP8 bytes=40000 packets=40 over=2000ms"
    );
    let track_of = |calls: &[Emitted], method: &str| {
        calls.iter().find_map(|emitted| match &emitted.call {
            Call::TrackPublished { track, .. } if method == "published" && track.mid == "1" => {
                Some(track.sid.clone())
            }
            Call::TrackStats { key, .. } if method == "stats" => Some(key.track_id.clone()),
            _ => None,
        })
    };
    let mut again = Harness::new();
    publisher_call(&mut again);
    let published_sid = track_of(&again.calls, "published").expect("published");
    again.calls.clear();
    again.apply_all(&[
        created(T0 + SECOND, OTHER.0),
        attached(T0 + SECOND, OTHER.0, OTHER_SUB, VIDEOROOM),
        subscribing(T0 + SECOND, OTHER.0, OTHER_SUB, PUB.2),
        connection(T0 + 2 * SECOND, OTHER.0, OTHER_SUB, "webrtcup"),
        stats(T0 + 4 * SECOND, OTHER.0, OTHER_SUB, 10, 40_000),
    ]);
    assert_eq!(track_of(&again.calls, "stats"), Some(published_sid));
    // A session that only subscribes is named by its opaque id.
    assert!(again.take().contains(&"1000 participantJoined 1234 app-22".to_owned()));
}

#[test]
fn a_hangup_before_webrtcup_leaves_a_participant_that_was_never_active() {
    let mut h = Harness::new();
    h.apply_all(&[
        created(T0, PUB.0),
        attached(T0, PUB.0, PUB.1, VIDEOROOM),
        joined(T0 + 1000, PUB, "probe0"),
        published(T0 + 2000, PUB),
        ice(T0 + 3000, PUB.0, PUB.1, "failed"),
        connection(T0 + 4000, PUB.0, PUB.1, "hangup"),
    ]);
    let lines = h.take();
    assert!(!lines.iter().any(|line| line.contains("participantActive")), "{lines:?}");
    assert_eq!(lines.last().expect("a leave"), "4 participantLeft probe0");
    // The late `webrtcup` of the dead PeerConnection brings nobody back.
    h.apply(&connection(T0 + 5000, PUB.0, PUB.1, "webrtcup"));
    assert!(h.take().is_empty());
}

#[test]
fn a_session_that_vanishes_without_destroyed_or_detached_times_out_at_its_last_event() {
    let config =
        AdapterConfig { session_idle_timeout: Duration::from_secs(60), ..AdapterConfig::default() };
    let mut h = Harness::with(config);
    publisher_call(&mut h);
    h.apply(&stats(T0 + 3 * SECOND, PUB.0, PUB.1, 10_000, 0));
    h.take();
    h.tick(T0 + 62 * SECOND);
    assert!(h.take().is_empty());
    h.tick(T0 + 63 * SECOND);
    assert_eq!(
        h.take(),
        [
            "3000 trackUnpublished probe0 0",
            "3000 trackUnpublished probe0 1",
            "3000 participantLeft probe0",
            // Empty since the last event, for longer than `room_idle_timeout` already.
            "33000 roomEnded 1234",
        ]
    );
    assert_eq!(h.adapter.counters().sessions_expired, 1);
    assert!(h.adapter.is_empty());
}

#[test]
fn counters_back_to_zero_start_a_new_baseline_never_a_negative_sample() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.take();
    h.apply_all(&[
        stats(T0 + 2 * SECOND, PUB.0, PUB.1, 100_000, 0),
        // A new PeerConnection whose `webrtcup` was not seen: counters start again.
        stats(T0 + 4 * SECOND, PUB.0, PUB.1, 5_000, 0),
        stats(T0 + 6 * SECOND, PUB.0, PUB.1, 25_000, 0),
    ]);
    assert_eq!(
        h.take(),
        [
            "2000 trackStats upstream video/VP8 bytes=100000 packets=100 over=1599ms",
            "6000 trackStats upstream video/VP8 bytes=20000 packets=20 over=2000ms",
        ]
    );
    assert_eq!(h.adapter.counters().counter_resets, 1);
    // A hang-up and a new PeerConnection: counters start from its `webrtcup`.
    h.apply_all(&[
        connection(T0 + 7 * SECOND, PUB.0, PUB.1, "hangup"),
        joined(T0 + 7 * SECOND + 1, PUB, "probe0"),
        connection(T0 + 8 * SECOND, PUB.0, PUB.1, "webrtcup"),
        stats(T0 + 10 * SECOND, PUB.0, PUB.1, 30_000, 0),
    ]);
    let lines = h.take();
    assert_eq!(
        lines.last().expect("a sample"),
        "10000 trackStats upstream video/VP8 bytes=30000 packets=30 over=2000ms"
    );
}

#[test]
fn repeated_events_change_nothing_and_repeated_ice_states_are_ignored() {
    let events = [
        created(T0, PUB.0),
        attached(T0 + 10_000, PUB.0, PUB.1, VIDEOROOM),
        joined(T0 + 20_000, PUB, "probe0"),
        published(T0 + 400_000, PUB),
        ice(T0 + 400_500, PUB.0, PUB.1, "connected"),
        connection(T0 + 401_000, PUB.0, PUB.1, "webrtcup"),
        stats(T0 + 2 * SECOND, PUB.0, PUB.1, 100_000, 0),
        leaving(T0 + 3 * SECOND, PUB.2),
    ];
    let mut once = Harness::new();
    once.apply_all(&events);
    let mut twice = Harness::new();
    for event in &events {
        assert_eq!(twice.apply(event), Applied::Accepted, "{event:?}");
        assert_eq!(twice.apply(event), Applied::Ignored, "a repeat of {event:?}");
    }
    assert_eq!(once.take(), twice.take());
    let mut h = Harness::new();
    publisher_call(&mut h);
    for (index, state) in
        ["connected", "ready", "connected", "ready", "connected"].iter().enumerate()
    {
        let applied = h.apply(&ice(T0 + SECOND + index as u64, PUB.0, PUB.1, state));
        assert_eq!(applied == Applied::Accepted, index < 2, "{state} at {index}");
    }
}

#[test]
fn reordered_events_make_the_same_participant() {
    let mut h = Harness::new();
    // `webrtcup` and `published` before `joined`: the participant joins, publishes and is active.
    h.apply_all(&[
        connection(T0 + 401_000, PUB.0, PUB.1, "webrtcup"),
        published(T0 + 400_000, PUB),
        joined(T0 + 20_000, PUB, "probe0"),
    ]);
    // The handle was not known at `webrtcup`: ignored; `published` joins (identity: the feed).
    let lines = h.take();
    assert_eq!(
        lines,
        [
            "400 roomStarted 1234",
            "400 participantJoined 1234 1111",
            "400 trackPublished 1111 0 audio/opus",
            "400 trackPublished 1111 1 video/VP8",
        ]
    );
    // `leaving` overtaken by `detached`: one leave.
    h.apply_all(&[detached(T0 + 5 * SECOND, PUB.0, PUB.1), leaving(T0 + 4 * SECOND, PUB.2)]);
    let lines = h.take();
    assert_eq!(
        lines.iter().filter(|line| line.contains("participantLeft")).count(),
        1,
        "{lines:?}"
    );
    // Stats overtaken by a later report: the earlier one is stale.
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.take();
    h.apply_all(&[
        stats(T0 + 4 * SECOND + 401_000, PUB.0, PUB.1, 300_000, 0),
        stats(T0 + 2 * SECOND + 401_000, PUB.0, PUB.1, 100_000, 0),
    ]);
    assert_eq!(
        h.take(),
        ["4401 trackStats upstream video/VP8 bytes=300000 packets=300 over=4000ms"]
    );
}

#[test]
fn an_echotest_handle_is_a_room_with_one_participant_tracks_and_both_directions() {
    let (session, handle) = (8_581_318_647_807_812_u64, 499_838_862_650_198_u64);
    let mut h = Harness::new();
    h.apply_all(&[
        created(T0, session),
        attached(T0 + 1000, session, handle, "janus.plugin.echotest"),
        connection(T0 + 500_000, session, handle, "webrtcup"),
        stats(T0 + 2 * SECOND + 500_000, session, handle, 100_000, 90_000),
        detached(T0 + 30 * SECOND, session, handle),
    ]);
    assert_eq!(
        h.take(),
        [
            "1 roomStarted echotest-499838862650198",
            "1 participantJoined echotest-499838862650198 app-8581318647807812",
            "500 participantActive app-8581318647807812",
            "2500 trackPublished app-8581318647807812 1 video/VP8",
            "2500 trackStats upstream video/VP8 bytes=100000 packets=100 over=2000ms",
            "2500 trackStats downstream video/VP8 bytes=90000 packets=90 over=2000ms",
            "30000 trackUnpublished app-8581318647807812 1",
            "30000 participantLeft app-8581318647807812",
            "30000 roomEnded echotest-499838862650198",
        ]
    );
}

#[test]
fn a_janus_restart_ends_everything_it_had() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.take();
    h.apply(&event(json!({"type": 256, "subtype": 1, "timestamp": T0 + 9 * SECOND,
        "event": {"status": "started"}})));
    let lines = h.take();
    assert_eq!(lines.last().expect("the room ends"), "9000 roomEnded 1234");
    assert!(lines.contains(&"9000 participantLeft probe0".to_owned()));
    assert!(h.adapter.is_empty());
}

#[test]
fn caps_refuse_new_state_and_name_the_setting() {
    let limits = AdapterLimits { max_sessions: 1, max_rooms: 1, ..AdapterLimits::default() };
    let mut adapter = Adapter::new(EMITTER, AdapterConfig { limits, ..AdapterConfig::default() });
    let mut out = Vec::new();
    adapter.apply(&created(T0, 1), &mut out).expect("the first session");
    let refused = adapter.apply(&created(T0, 2), &mut out).expect_err("a second session");
    assert_eq!(refused.field, "session_id");
    assert!(refused.problem.contains("`janus.max_sessions` (1)"), "{refused}");
    adapter.apply(&attached(T0, 1, 10, "janus.plugin.echotest"), &mut out).expect("a room");
    let refused = adapter
        .apply(&attached(T0, 1, 11, "janus.plugin.streaming"), &mut out)
        .expect_err("a second room");
    assert!(refused.to_string().starts_with("handle_id: a new room"), "{refused}");
    let counters = adapter.counters();
    assert_eq!((counters.refused_sessions, counters.refused_rooms), (1, 1));
}

#[test]
fn a_restored_adapter_keeps_the_call_and_loses_at_most_one_stats_period() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    h.apply(&stats(T0 + 2 * SECOND + 401_000, PUB.0, PUB.1, 100_000, 0));
    let before: Vec<Emitted> = std::mem::take(&mut h.calls);
    let snapshot = h.adapter.take_snapshot().expect("the state changed");
    assert!(h.adapter.take_snapshot().is_none(), "nothing changed since");
    let mut restored = Harness::restored(&snapshot, T0 + 3 * SECOND);
    restored.apply_all(&[
        stats(T0 + 4 * SECOND + 401_000, PUB.0, PUB.1, 300_000, 0),
        stats(T0 + 6 * SECOND + 401_000, PUB.0, PUB.1, 500_000, 0),
        leaving(T0 + 7 * SECOND, PUB.2),
    ]);
    // The first report after the restart is a baseline: one period lost, no double count.
    assert_eq!(
        restored.take(),
        [
            "6401 trackStats upstream video/VP8 bytes=200000 packets=200 over=2000ms",
            "7000 trackUnpublished probe0 0",
            "7000 trackUnpublished probe0 1",
            "7000 participantLeft probe0",
        ]
    );
    restored.apply(&stats(T0 + 8 * SECOND + 401_000, PUB.0, PUB.1, 600_000, 0));
    let participant = |calls: &[Emitted]| {
        calls.iter().find_map(|emitted| match &emitted.call {
            Call::ParticipantJoined { participant, .. }
            | Call::ParticipantLeft { participant, .. } => Some(participant.sid.clone()),
            _ => None,
        })
    };
    restored.adapter.apply(&leaving(T0 + 7 * SECOND, PUB.2), &mut restored.calls).expect("ignored");
    let mut after = Harness::restored(&snapshot, T0 + 3 * SECOND);
    after.apply(&leaving(T0 + 7 * SECOND, PUB.2));
    assert_eq!(participant(&before), participant(&after.calls), "the same participant leaves");
    assert!(matches!(
        Adapter::restore(
            &Snapshot { state: "{\"version\":99}".into(), ..snapshot.clone() },
            AdapterConfig::default(),
            millis(T0)
        ),
        Err(RestoreError::Corrupt { .. } | RestoreError::Version { .. })
    ));
}

#[test]
fn calls_carry_what_the_store_and_webhooks_need() {
    let mut h = Harness::new();
    publisher_call(&mut h);
    let Some(Call::ParticipantJoined { room, participant, guard, .. }) = h
        .calls
        .iter()
        .map(|emitted| &emitted.call)
        .find(|call| call.method_name() == "participantJoined")
    else {
        panic!("a join")
    };
    assert_eq!(room.name, "1234");
    assert!(room.sid.starts_with("RM_"));
    assert_eq!(room.creation_time, (T0 / SECOND) as i64);
    assert_eq!(participant.identity, "probe0");
    assert_eq!(participant.name, "probe0");
    assert_eq!(participant.state, lk::participant_info::State::Joined as i32);
    assert_eq!(guard, DEFAULT_GUARD);
    assert!(h.calls.iter().all(|emitted| &*emitted.node == EMITTER));
    let Some(Call::TrackPublished { track, .. }) = h
        .calls
        .iter()
        .map(|emitted| &emitted.call)
        .find(|call| call.method_name() == "trackPublished")
    else {
        panic!("a track")
    };
    assert_eq!(track.r#type, lk::TrackType::Audio as i32);
    assert_eq!(track.source, lk::TrackSource::Microphone as i32);
    assert_eq!((track.mid.as_str(), track.mime_type.as_str()), ("0", "audio/opus"));
}

#[test]
fn codecs_are_spelled_as_livekit_mime_types() {
    assert_eq!(mime(MediaKind::Video, Some("vp8")), "video/VP8");
    assert_eq!(mime(MediaKind::Video, Some("h264")), "video/H264");
    assert_eq!(mime(MediaKind::Audio, Some("opus")), "audio/opus");
    assert_eq!(mime(MediaKind::Audio, Some("pcmu")), "audio/PCMU");
    assert_eq!(mime(MediaKind::Video, Some("x-new")), "video/x-new");
    assert_eq!(mime(MediaKind::Audio, None), "");
}
