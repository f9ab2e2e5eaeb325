//! Property tests of the ingest parsers: whatever the bytes, decoding never panics, a readable
//! batch gives exactly one verdict per call, and applying it accounts for every call.

use proptest::prelude::*;
use prost::Message as _;
use telemetry_core::{CoreConfig, TelemetryService, UnixMillis};
use telemetry_proto::v1;

use crate::ingest::apply_calls;
use crate::ingest::decode::{Format, decode_batch, decode_json_call, decode_protobuf_call};
use crate::ingest::validate::Limits;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-zA-Z_0-9 ]{0,12}".prop_map(serde_json::Value::String),
        prop_oneof![Just("UPSTREAM"), Just("VIDEO"), Just("RM_1"), Just("2026-01-01T00:00:00Z")]
            .prop_map(|s| serde_json::json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("roomStarted"),
            Just("trackStats"),
            Just("room"),
            Just("sid"),
            Just("key"),
            Just("stat"),
            Just("streams"),
            Just("participant"),
            Just("at"),
            Just("nodeId"),
            Just("streamType"),
            Just("primaryBytes"),
            Just("participantJoined"),
            Just("roomId"),
            Just("trackId"),
            Just("participantId"),
            Just("x"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..5)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        // Every call is decoded as it is taken.
        let _ = decode_batch(Format::Json, &bytes, usize::MAX).map(Iterator::count);
        let _ = decode_batch(Format::Protobuf, &bytes, usize::MAX).map(Iterator::count);
        let _ = decode_protobuf_call(&bytes);
    }

    #[test]
    fn arbitrary_json_calls_get_one_verdict_each(calls in prop::collection::vec(json_value(), 0..8)) {
        let body = serde_json::to_vec(&serde_json::json!({ "calls": calls })).expect("json");
        let decoded = decode_batch(Format::Json, &body, usize::MAX).expect("a list of calls is a readable batch");
        prop_assert_eq!(decoded.len(), calls.len());
        let (service, _receiver) = TelemetryService::new(CoreConfig::default());
        let outcome = apply_calls(&service, decoded, 0, "key", UnixMillis(1_700_000_000_000), &Limits::default());
        prop_assert_eq!(outcome.accepted + outcome.rejected.len(), calls.len());
        for rejection in &outcome.rejected {
            prop_assert!(!rejection.error.is_empty());
        }
    }

    #[test]
    fn json_and_protobuf_decode_the_same_call(sid in "RM_[a-zA-Z0-9]{1,12}", name in "[a-z ]{0,10}", creation in 1i64..2_000_000_000) {
        let call = v1::TelemetryCall {
            at: None,
            node_id: "n".into(),
            call: Some(v1::telemetry_call::Call::RoomStarted(v1::RoomCall {
                room: Some(telemetry_core::proto::Room { sid, name, creation_time: creation, ..Default::default() }),
            })),
        };
        let from_json = decode_json_call(&serde_json::to_string(&call).expect("json")).expect("decodes");
        let from_protobuf = decode_protobuf_call(&call.encode_to_vec()).expect("decodes");
        prop_assert_eq!(&from_json, &call);
        prop_assert_eq!(&from_protobuf, &call);
    }
}

/// A protobuf lifecycle call holding an enum number this build does not know (protobuf enums
/// are open) is rejected naming the field: its event could not be written as JSON, and the
/// pipeline, which writes it, panicked on it (found by the `recorder` fuzz target, which hit the
/// same write with an unknown event type).
#[test]
fn protobuf_lifecycle_calls_with_unknown_enum_numbers_are_rejected_naming_the_field() {
    let participant = telemetry_core::proto::ParticipantInfo {
        sid: "PA_1".into(),
        identity: "alice".into(),
        state: 75,
        ..Default::default()
    };
    let call = v1::TelemetryCall {
        at: None,
        node_id: String::new(),
        call: Some(v1::telemetry_call::Call::ParticipantJoined(v1::ParticipantJoinedCall {
            room: Some(telemetry_core::proto::Room { sid: "RM_1".into(), ..Default::default() }),
            participant: Some(participant),
            ..Default::default()
        })),
    };
    let error = decode_protobuf_call(&call.encode_to_vec()).expect_err("refused");
    assert_eq!(
        error,
        "participantJoined.participant: 75 is not a known value of one of its enum fields"
    );
    // The same call with a known state is read, and its event can be stored.
    let mut known = call.clone();
    if let Some(v1::telemetry_call::Call::ParticipantJoined(joined)) = &mut known.call {
        joined.participant.as_mut().expect("participant").state = 1;
    }
    assert_eq!(decode_protobuf_call(&known.encode_to_vec()), Ok(known));
    // A stats sample's unknown numbers are not written as JSON: it is read.
    let stats = v1::TelemetryCall {
        call: Some(v1::telemetry_call::Call::TrackStats(v1::TrackStatsCall {
            stat: Some(telemetry_core::proto::AnalyticsStat { kind: 75, ..Default::default() }),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert!(decode_protobuf_call(&stats.encode_to_vec()).is_ok());
}

/// The `recorder` fuzz target's first finding: an `IngestEvents` message whose second event has
/// type 75, a number this build does not know (a newer LiveKit may send new types). Storing it
/// panicked writing the event as JSON; that event is now dropped alone, named, and the others
/// are stored.
#[test]
fn recorder_events_with_unknown_enum_numbers_are_dropped_naming_the_event() {
    use base64::Engine as _;
    let input = base64::engine::general_purpose::STANDARD
        .decode(
            "AQosEgYIgOLPqgYiFwoGUk1fcmVjEg1yZWNvcmRlZC1yb29tygEIQUVfc2VlZDEKPwhLEgYIgeLPqgYaBlJNX3JlYyoIUEFFX3NpY2UyEQoIUEFfYWxpY2USBWFsaWNlYgMgpAPKAQhBRV9zZWVkMgodCAQaBlJNX3JlYzoGVFJfY2FtygEIQUVfc2VlZDM=",
        )
        .expect("base64");
    // The fuzz input's first byte chose the stream; the rest is the message, of late 2023.
    let message = telemetry_core::proto::AnalyticsEvents::decode(&input[1..]).expect("decodes");
    assert_eq!(message.events[1].r#type, 75);
    let limits = crate::ingest::validate::Limits::default();
    let now = telemetry_core::UnixMillis(1_700_000_100_000);
    let (batch, dropped) = crate::ingest::grpc::events_batch(message.clone(), &limits, now);
    assert_eq!(dropped, ["events[1]: 75 is not a known value of one of its enum fields"]);
    assert_eq!(batch.events.len(), 2, "the other events are stored");
    // Without the unknown number the same events are all stored.
    let mut known = message;
    known.events[1].r#type = telemetry_core::proto::AnalyticsEventType::ParticipantActive as i32;
    let (batch, dropped) = crate::ingest::grpc::events_batch(known, &limits, now);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(batch.events.len(), 3);
    assert_eq!(batch.events[1].event_type, "PARTICIPANT_ACTIVE");
}

/// Recorder events are stored once per id, but events without an id are all kept: each gets a
/// key of its own instead of sharing the empty id, under which only the first would be stored.
#[test]
fn recorder_events_without_ids_get_keys_of_their_own() {
    use telemetry_core::proto as lk;
    let event = |id: &str| lk::AnalyticsEvent {
        id: id.into(),
        r#type: lk::AnalyticsEventType::RoomCreated as i32,
        room_id: "RM_rec".into(),
        timestamp: Some(telemetry_core::UnixMillis(1_700_000_000_000).to_timestamp()),
        ..Default::default()
    };
    let message =
        lk::AnalyticsEvents { events: vec![event(""), event("AE_with1234567"), event("")] };
    let limits = crate::ingest::validate::Limits::default();
    let now = telemetry_core::UnixMillis(1_700_000_100_000);
    let (batch, dropped) = crate::ingest::grpc::events_batch(message.clone(), &limits, now);
    assert!(dropped.is_empty(), "{dropped:?}");
    let keys: Vec<&str> = batch.events.iter().map(|event| event.key.as_str()).collect();
    assert_eq!(keys[1], "AE_with1234567", "an id is the key");
    assert!(!keys[0].is_empty() && !keys[2].is_empty() && keys[0] != keys[2], "{keys:?}");
    // The same message again (a retry) keys its id-less events anew: they have nothing to be
    // known by; its event with an id is known again.
    let (again, _) = crate::ingest::grpc::events_batch(message, &limits, now);
    assert_ne!(again.events[0].key, batch.events[0].key);
    assert_eq!(again.events[1].key, batch.events[1].key);
}

/// The `ingest_json` fuzz target's finding once the quality detectors landed: a request whose
/// stats samples open and close an issue was answered naming an earlier output than its last,
/// so the answer (and, in cluster mode, the acknowledgement) did not wait for the issue's
/// event. The body is the seed `fuzz/corpus/ingest_json/quality-from-stats`: a publisher's
/// upstream losing a fifth of its packets for 35 s, then clean: the last output is the end.
#[test]
fn a_request_s_outcome_names_the_quality_outputs_its_samples_caused() {
    let seed = include_bytes!("../../../../fuzz/corpus/ingest_json/quality-from-stats");
    // The fuzz input's first two bytes chose the content type and the caps; the rest is the body.
    let calls: Vec<_> =
        decode_batch(Format::Json, &seed[2..], usize::MAX).expect("reads").collect();
    let (service, receiver) = TelemetryService::new(CoreConfig::default());
    let received_at = UnixMillis(1_700_000_000_000);
    let outcome = apply_calls(&service, calls, 0, "node", received_at, &Limits::default());
    assert_eq!(outcome.rejected_count, 0, "{:?}", outcome.rejected);
    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
    let quality = outputs
        .iter()
        .filter(|output| matches!(output.output, telemetry_core::Output::Quality(_)))
        .count();
    assert_eq!(quality, 2, "one issue opened and closed by the samples");
    assert_eq!(outcome.last_seq, outputs.last().map(|output| output.seq));
}
