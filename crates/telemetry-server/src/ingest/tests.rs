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
        let _ = decode_batch(Format::Json, &bytes, usize::MAX);
        let _ = decode_batch(Format::Protobuf, &bytes, usize::MAX);
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
