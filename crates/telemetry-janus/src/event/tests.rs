//! Tests of event decoding: every kind the mapping uses, exact 64-bit ids, and errors that name
//! the field.

use serde_json::json;

use super::*;

fn base(event_type: u64) -> Value {
    json!({"emitter": "janus-1", "type": event_type, "timestamp": 1_795_510_450_198_789_u64})
}

fn with(mut value: Value, extra: Value) -> Value {
    for (key, field) in extra.as_object().expect("an object") {
        value[key] = field.clone();
    }
    value
}

fn problem(value: Value) -> String {
    decode(&value).expect_err("an error").to_string()
}

#[test]
fn sixty_four_bit_ids_are_read_exactly() {
    // 2^53 + 1 is the first integer a double cannot hold; u64::MAX the largest id.
    let text = r#"{"emitter":"j","type":16,"subtype":6,"timestamp":1,"session_id":9007199254740993,
        "handle_id":18446744073709551615,"event":{"connection":"webrtcup"}}"#;
    let event = decode(&serde_json::from_str(text).expect("JSON")).expect("an event");
    assert_eq!(event.session_id, Some(9_007_199_254_740_993));
    assert_eq!(event.handle_id, Some(u64::MAX));
    assert_eq!(event.body, Body::WebrtcUp);
}

#[test]
fn every_kind_the_mapping_uses_is_read() {
    let session = json!({"session_id": 5});
    let handle = json!({"session_id": 5, "handle_id": 6, "opaque_id": "app-1"});
    let cases = [
        (
            with(with(base(1), session.clone()), json!({"event": {"name": "created"}})),
            Body::SessionCreated,
        ),
        (
            with(with(base(1), session.clone()), json!({"event": {"name": "timeout"}})),
            Body::SessionDestroyed,
        ),
        (
            with(
                with(base(2), handle.clone()),
                json!({"event": {"name": "attached", "plugin": "janus.plugin.echotest"}}),
            ),
            Body::Attached { plugin: "janus.plugin.echotest".into() },
        ),
        (
            with(
                with(base(2), handle.clone()),
                json!({"event": {"name": "detached", "plugin": "janus.plugin.echotest"}}),
            ),
            Body::Detached,
        ),
        (
            with(
                with(with(base(16), handle.clone()), json!({"subtype": 1})),
                json!({"event": {"ice": "ready"}}),
            ),
            Body::IceState("ready".into()),
        ),
        (
            with(
                with(with(base(16), handle.clone()), json!({"subtype": 6})),
                json!({"event": {"connection": "hangup", "reason": "DTLS alert"}}),
            ),
            Body::Hangup { reason: "DTLS alert".into() },
        ),
        (
            with(with(base(256), json!({"subtype": 1})), json!({"event": {"status": "started"}})),
            Body::CoreStarted,
        ),
        (
            with(with(base(256), json!({"subtype": 2})), json!({"event": {"status": "shutdown"}})),
            Body::CoreShutdown,
        ),
        (with(base(128), json!({"event": {"transport": "http"}})), Body::Other),
        (with(base(8), json!({"event": {}})), Body::Other),
    ];
    for (value, body) in cases {
        let event = decode(&value).unwrap_or_else(|error| panic!("{value}: {error}"));
        assert_eq!(event.body, body, "{value}");
    }
}

#[test]
fn videoroom_events_are_read_with_numeric_and_string_rooms() {
    let joined = with(
        base(64),
        json!({"session_id": 1, "handle_id": 2, "event": {"plugin": "janus.plugin.videoroom",
            "data": {"event": "joined", "room": 1234, "id": 4189015681043358_u64, "display": "probe0"}}}),
    );
    assert_eq!(
        decode(&joined).expect("joined").body,
        Body::Plugin {
            plugin: VIDEOROOM_NAME.into(),
            data: PluginData::VideoRoom(VideoRoomEvent::Joined {
                room: "1234".into(),
                feed: 4_189_015_681_043_358,
                display: Some("probe0".into()),
            }),
        }
    );
    let published = with(
        base(64),
        json!({"session_id": 1, "handle_id": 2, "event": {"plugin": "janus.plugin.videoroom",
            "data": {"event": "published", "room": "lobby", "id": 7, "streams": [
                {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
                {"type": "video", "mindex": 1, "mid": "1", "codec": "vp8", "disabled": true},
                {"type": "data", "mindex": 2, "mid": "2"}]}}}),
    );
    let Body::Plugin {
        data: PluginData::VideoRoom(VideoRoomEvent::Published { room, streams, .. }),
        ..
    } = decode(&published).expect("published").body
    else {
        panic!("published")
    };
    assert_eq!(room, "lobby");
    assert_eq!(
        streams,
        vec![
            PublishedStream { kind: MediaKind::Audio, mid: "0".into(), codec: Some("opus".into()) },
            PublishedStream { kind: MediaKind::Data, mid: "2".into(), codec: None },
        ]
    );
    let leaving = with(
        base(64),
        json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "leaving", "room": 1234, "id": 9}}}),
    );
    assert_eq!(
        decode(&leaving).expect("leaving").body,
        Body::Plugin {
            plugin: VIDEOROOM_NAME.into(),
            data: PluginData::VideoRoom(VideoRoomEvent::Leaving { room: "1234".into(), feed: 9 }),
        }
    );
    let configured = with(
        base(64),
        json!({"session_id": 1, "handle_id": 2, "event": {"plugin": "janus.plugin.videoroom",
            "data": {"event": "configured", "room": 1234, "id": 9, "bitrate": 128000}}}),
    );
    assert!(matches!(
        decode(&configured).expect("configured").body,
        Body::Plugin { data: PluginData::Other, .. }
    ));
}

const VIDEOROOM_NAME: &str = "janus.plugin.videoroom";

#[test]
fn media_stats_are_read_single_combined_and_per_simulcast_layer() {
    let report = json!({"mid": "1", "media": "video", "codec": "vp8", "rtt": 3, "substream": 1,
        "packets-received": 150, "bytes-received": 1500, "bytes-sent": 7, "lost": 2,
        "nacks-sent": 1});
    let single = with(
        with(base(32), json!({"subtype": 3, "session_id": 1, "handle_id": 2})),
        json!({"event": report.clone()}),
    );
    let Body::MediaStats(reports) = decode(&single).expect("stats").body else { panic!("stats") };
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].bytes_received, 1500);
    assert_eq!(reports[0].packets_received, 150);
    assert_eq!(reports[0].kind, Some(MediaKind::Video));
    assert_eq!(reports[0].substream, 1);
    assert_eq!((reports[0].rtt, reports[0].lost, reports[0].nacks_sent), (3, 2, 1));
    let combined = with(
        with(base(32), json!({"subtype": 3, "session_id": 1, "handle_id": 2})),
        json!({"event": [report, {"mid": "2", "media": "data", "bytes-sent": 5}]}),
    );
    let Body::MediaStats(reports) = decode(&combined).expect("combined").body else {
        panic!("stats")
    };
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].bytes_sent, 5);
}

#[test]
fn errors_name_the_field_at_fault() {
    let handle = json!({"session_id": 5, "handle_id": 6});
    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2]), "(event): expected a JSON object, found an array"),
        (json!({"type": 1, "timestamp": 1}), "emitter: required"),
        (with(base(1), json!({"emitter": ""})), "emitter: empty"),
        (
            with(base(1), json!({"timestamp": -5})),
            "timestamp: -5 is not an unsigned 64-bit integer",
        ),
        (
            with(base(1), json!({"type": "session"})),
            "type: expected an unsigned integer, found a string",
        ),
        (with(base(512), json!({"event": {}})), "type: unknown event type 512"),
        (
            with(with(base(16), handle.clone()), json!({"subtype": 9, "event": {}})),
            "subtype: unknown subtype 9 of type 16",
        ),
        (
            with(with(base(16), handle.clone()), json!({"event": {}})),
            "subtype: required for events of type 16",
        ),
        (
            with(base(1), json!({"session_id": 1.5, "event": {"name": "created"}})),
            "session_id: 1.5 is not an unsigned 64-bit integer",
        ),
        (
            with(base(1), json!({"event": {"name": "created"}})),
            "session_id: required for a session event",
        ),
        (
            with(base(1), json!({"session_id": 1, "event": "created"})),
            "event: expected an object, found a string",
        ),
        (
            with(
                base(2),
                json!({"session_id": 1, "handle_id": 2, "event": {"name": "attached", "plugin": "echotest"}}),
            ),
            "event.plugin: `echotest` is not a Janus plugin's name",
        ),
        (
            with(
                with(base(16), json!({"subtype": 6, "session_id": 5})),
                json!({"event": {"connection": "webrtcup"}}),
            ),
            "handle_id: required for a handle's event",
        ),
        (
            with(
                with(base(32), handle.clone()),
                json!({"subtype": 3, "event": {"mid": "0", "media": "screen"}}),
            ),
            "event.media: `screen` is not `audio`, `video` or `data`",
        ),
        (
            with(
                with(base(32), handle.clone()),
                json!({"subtype": 3, "event": [{"mid": "0"}, {"media": "audio"}]}),
            ),
            "event[1].mid: required",
        ),
        (
            with(
                with(base(32), handle.clone()),
                json!({"subtype": 3, "event": {"mid": "0", "bytes-sent": "12"}}),
            ),
            "event.bytes-sent: expected an unsigned integer, found a string",
        ),
        (
            with(
                base(64),
                json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "joined", "room": true, "id": 1}}}),
            ),
            "event.data.room: expected an unsigned integer or a string, found a boolean",
        ),
        (
            with(
                base(64),
                json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "leaving", "room": 1}}}),
            ),
            "event.data.id: required",
        ),
        (
            with(
                base(64),
                json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "published", "room": 1, "id": 2, "streams": [{"type": "audio", "mid": "0"}, {"type": "video"}]}}}),
            ),
            "event.data.streams[1].mid: required",
        ),
        (
            with(
                base(64),
                json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "subscribing", "room": 1, "streams": {}}}}),
            ),
            "event.data.streams: expected an array, found an object",
        ),
    ];
    for (value, expected) in cases {
        let message = problem(value.clone());
        assert!(
            message.starts_with(expected),
            "{value}: `{message}` does not start with `{expected}`"
        );
    }
}

#[test]
fn unknown_names_of_known_kinds_carry_nothing() {
    let cases = [
        with(base(1), json!({"session_id": 1, "event": {"name": "claimed"}})),
        with(
            base(2),
            json!({"session_id": 1, "handle_id": 2, "event": {"name": "cloned", "plugin": "janus.plugin.x"}}),
        ),
        with(
            base(16),
            json!({"subtype": 6, "session_id": 1, "handle_id": 2, "event": {"connection": "sideways"}}),
        ),
        with(
            base(64),
            json!({"event": {"plugin": "janus.plugin.thirdparty", "data": {"anything": [1, {"deep": true}]}}}),
        ),
        with(
            base(64),
            json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"event": "talking", "room": 1}}}),
        ),
        with(
            base(64),
            json!({"event": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "event"}}}),
        ),
    ];
    for value in cases {
        let event = decode(&value).unwrap_or_else(|error| panic!("{value}: {error}"));
        assert!(
            matches!(event.body, Body::Other | Body::Plugin { data: PluginData::Other, .. }),
            "{value}"
        );
    }
}
