//! Tests of the validators: each rule rejects what it should with the field path named, and
//! accepts its neighbours; property tests tie the rules to what the store can render.

use pbjson_types::Timestamp;
use proptest::prelude::*;
use telemetry_core::UnixMillis;
use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

use crate::ingest::convert::convert;
use crate::ingest::decode::decode_json_call;
use crate::ingest::validate::{Checker, Limits, StatKind};

const NOW: UnixMillis = UnixMillis(1_767_225_600_000); // 2026-01-01

fn check(call: v1::TelemetryCall) -> Result<(), String> {
    convert(call, NOW, "key", &Limits::default()).map(|_| ())
}

fn check_json(json: serde_json::Value) -> Result<(), String> {
    check(decode_json_call(&json.to_string())?)
}

fn rejected(result: Result<(), String>, expected: &[&str]) {
    let error = result.expect_err("rejected");
    for part in expected {
        assert!(error.contains(part), "{error:?} should contain {part:?}");
    }
}

fn room() -> serde_json::Value {
    serde_json::json!({ "sid": "RM_1", "name": "room" })
}

fn stats_call(stat: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "trackStats": { "roomId": "RM_1",
        "key": { "participantId": "PA_1", "trackId": "TR_1", "streamType": "UPSTREAM" },
        "stat": stat } })
}

fn rtp_call(stats: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "trackPublishRtpStats": { "room": room(), "participantId": "PA_1",
        "trackId": "TR_1", "stats": stats } })
}

#[test]
fn scores_beyond_f32_or_outside_0_to_5_are_rejected_naming_the_field() {
    rejected(
        check_json(stats_call(serde_json::json!({ "score": 1e39 }))),
        &["trackStats.stat.score: inf is not a finite number in 0..=5", "infinity"],
    );
    for (field, value) in [("score", "NaN"), ("minScore", "-Infinity"), ("medianScore", "Infinity")]
    {
        rejected(
            check_json(stats_call(serde_json::json!({ field: value }))),
            &[&format!("trackStats.stat.{field}:"), "not a finite number in 0..=5"],
        );
    }
    rejected(check_json(stats_call(serde_json::json!({ "score": 5.5 }))), &["5.5 is not"]);
    rejected(check_json(stats_call(serde_json::json!({ "score": -1 }))), &["-1 is not"]);
    for score in [0.0, 1.0, 4.2, 5.0] {
        check_json(stats_call(serde_json::json!({ "score": score }))).expect("a valid score");
    }
}

#[test]
fn protobuf_floats_carrying_nan_or_infinity_are_rejected() {
    let call = v1::TelemetryCall {
        call: Some(Member::TrackStats(v1::TrackStatsCall {
            room_id: "RM_1".into(),
            key: Some(v1::StatsKey {
                participant_id: "PA_1".into(),
                track_id: "TR_1".into(),
                ..Default::default()
            }),
            stat: Some(lk::AnalyticsStat { median_score: f32::NAN, ..Default::default() }),
            ..Default::default()
        })),
        ..Default::default()
    };
    rejected(check(call), &["trackStats.stat.medianScore: NaN is not a finite number"]);
}

#[test]
fn rtp_stats_floats_are_finite_and_in_range() {
    rejected(
        check_json(rtp_call(serde_json::json!({ "packetRate": "NaN" }))),
        &["trackPublishRtpStats.stats.packetRate: NaN is not a finite number of at least 0"],
    );
    rejected(
        check_json(rtp_call(serde_json::json!({ "bitrate": -5 }))),
        &["trackPublishRtpStats.stats.bitrate: -5 is not a finite number of at least 0"],
    );
    rejected(
        check_json(rtp_call(serde_json::json!({ "packetLossPercentage": 150 }))),
        &["trackPublishRtpStats.stats.packetLossPercentage: 150 is not a finite number in 0..=100"],
    );
    rejected(
        check_json(rtp_call(serde_json::json!({ "packetDrift": { "driftMs": "Infinity" } }))),
        &["trackPublishRtpStats.stats.packetDrift.driftMs: inf is not a finite number"],
    );
    check_json(rtp_call(serde_json::json!({
        "packetRate": 50.5, "bitrate": 1e6, "packetLossPercentage": 2.5, "jitterMax": 0,
        "packetDrift": { "driftMs": -12.5, "clockRate": 90000 }
    })))
    .expect("valid RTP stats; a drift may be negative");
}

#[test]
fn times_must_be_valid_and_neither_too_old_nor_too_far_ahead() {
    let call = |at: Timestamp| v1::TelemetryCall {
        at: Some(at),
        call: Some(Member::RoomEnded(v1::RoomCall {
            room: Some(lk::Room { sid: "RM_1".into(), ..Default::default() }),
        })),
        ..Default::default()
    };
    let now = NOW.to_timestamp();
    rejected(
        check(call(Timestamp { nanos: 1_000_000_000, ..now })),
        &["at: not a valid timestamp", "nanos 1000000000"],
    );
    rejected(check(call(Timestamp { nanos: -1, ..now })), &["at: not a valid timestamp"]);
    rejected(check(call(Timestamp { seconds: i64::MAX, nanos: 0 })), &["at: not a valid"]);
    rejected(check(call(Timestamp { seconds: 0, nanos: 0 })), &["at:", "`store.retention`"]);
    rejected(
        check(call(NOW.plus_millis(10 * 60 * 1000).to_timestamp())),
        &["at: 600000 ms in the future"],
    );
    check(call(NOW.plus_millis(-29 * 24 * 3600 * 1000).to_timestamp())).expect("29 days old");
    check(call(NOW.plus_millis(60 * 1000).to_timestamp())).expect("a minute ahead");

    let stream = |start: &str, end: &str| {
        stats_call(serde_json::json!({ "streams": [ {}, { "startTime": start, "endTime": end } ] }))
    };
    rejected(
        check_json(stream("2026-01-01T00:00:10Z", "2026-01-01T00:00:00Z")),
        &["trackStats.stat.streams[1].endTime: before `startTime`"],
    );
    rejected(
        check_json(stream("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")),
        &["trackStats.stat.streams[1].startTime:", "older than"],
    );
    rejected(
        check_json(stream("2025-12-31T23:59:00Z", "9999-01-01T00:00:00Z")),
        &["trackStats.stat.streams[1].endTime:", "in the future"],
    );
    check_json(stream("2025-12-31T23:59:50Z", "2026-01-01T00:00:00Z")).expect("a valid stream");

    // A timestamp deep in a payload only needs to be one the store can render.
    let rtp = lk::RtpStats {
        last_pli: Some(Timestamp { seconds: 10, nanos: 2_000_000_000 }),
        ..Default::default()
    };
    let call = v1::TelemetryCall {
        call: Some(Member::TrackPublishRtpStats(v1::TrackPublishRtpStatsCall {
            room: Some(lk::Room { sid: "RM_1".into(), ..Default::default() }),
            participant_id: "PA_1".into(),
            track_id: "TR_1".into(),
            stats: Some(rtp),
            ..Default::default()
        })),
        ..Default::default()
    };
    rejected(check(call), &["trackPublishRtpStats.stats.lastPli: cannot be stored"]);
}

#[test]
fn room_creation_times_are_from_1970_to_now() {
    let call = |creation: i64| serde_json::json!({ "roomStarted": { "room": { "sid": "RM_1", "creationTime": creation.to_string() } } });
    rejected(check_json(call(-1)), &["roomStarted.room.creationTime: -1 is not a time"]);
    rejected(check_json(call(1_000_000_000_000_000)), &["roomStarted.room.creationTime:"]);
    check_json(call(NOW.as_secs() - 3600)).expect("an hour ago");
    check_json(call(0)).expect("unset");
}

#[test]
fn rtt_and_jitter_sent_negative_as_unsigned_are_rejected() {
    rejected(
        check_json(stats_call(serde_json::json!({ "streams": [ { "rtt": 4_294_967_295u32 } ] }))),
        &["trackStats.stat.streams[0].rtt: 4294967295 is more than 2147483647"],
    );
    rejected(
        check_json(stats_call(
            serde_json::json!({ "streams": [ { "jitter": 2_147_483_648u32 } ] }),
        )),
        &["trackStats.stat.streams[0].jitter:"],
    );
    check_json(stats_call(serde_json::json!({ "streams": [ { "rtt": 40, "jitter": 3000 } ] })))
        .expect("usual values");
}

#[test]
fn json_integers_beyond_their_type_are_refused_by_decoding_naming_the_field() {
    let error = decode_json_call(
        &stats_call(serde_json::json!({ "streams": [ { "rtt": 4_294_967_296u64 } ] })).to_string(),
    )
    .expect_err("beyond u32");
    assert!(error.contains("trackStats.stat.streams[0].rtt"), "{error}");
}

#[test]
fn ids_are_capped_at_max_id_bytes_and_text_at_max_text_bytes() {
    let long_id = "x".repeat(257);
    let ok_id = "x".repeat(256);
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({ "nodeId": long_id, "roomEnded": { "room": room() } }),
            "nodeId: 257 bytes",
        ),
        (
            serde_json::json!({ "roomEnded": { "room": { "sid": long_id } } }),
            "roomEnded.room.sid: 257 bytes",
        ),
        (
            serde_json::json!({ "roomEnded": { "room": { "sid": "RM_1", "name": long_id } } }),
            "roomEnded.room.name",
        ),
        (
            serde_json::json!({ "participantJoined": { "room": room(), "participant": { "sid": "PA_1", "identity": long_id } } }),
            "participantJoined.participant.identity",
        ),
        (
            serde_json::json!({ "participantLeft": { "room": room(), "participant": { "sid": "PA_1" }, "guard": long_id } }),
            "participantLeft.guard",
        ),
        (
            serde_json::json!({ "trackSubscribeFailed": { "room": room(), "participantId": "PA_1", "trackId": "TR_1", "error": long_id } }),
            "trackSubscribeFailed.error",
        ),
        (
            serde_json::json!({ "egressStarted": { "info": { "egressId": long_id } } }),
            "egressStarted.info.egressId",
        ),
        (
            serde_json::json!({ "ingressCreated": { "info": { "ingressId": long_id } } }),
            "ingressCreated.info.ingressId",
        ),
        (
            stats_call(serde_json::json!({})).pipe(|mut v| {
                v["trackStats"]["key"]["country"] = long_id.clone().into();
                v
            }),
            "trackStats.key.country",
        ),
        (
            stats_call(serde_json::json!({})).pipe(|mut v| {
                v["trackStats"]["roomId"] = long_id.clone().into();
                v
            }),
            "trackStats.roomId",
        ),
        (stats_call(serde_json::json!({ "mime": long_id })), "trackStats.stat.mime"),
    ];
    for (call, field) in cases {
        rejected(check_json(call), &[field, "more than the 256 allowed (`limits.max_id_bytes`)"]);
    }
    // At the cap, accepted; free text may be longer, up to its own cap.
    check_json(serde_json::json!({ "participantJoined": { "room": { "sid": ok_id, "name": ok_id },
        "participant": { "sid": "PA_1", "identity": ok_id, "name": long_id, "metadata": long_id } } }))
    .expect("ids at the cap, text over the id cap");
    check_json(
        serde_json::json!({ "egressEnded": { "info": { "egressId": "EG_1", "error": long_id } } }),
    )
    .expect("an egress error is text");
    let long_text = "m".repeat(65537);
    rejected(
        check_json(serde_json::json!({ "participantJoined": { "room": room(),
            "participant": { "sid": "PA_1", "metadata": long_text } } })),
        &["participantJoined.participant.metadata: 65537 bytes", "`limits.max_text_bytes`"],
    );
    rejected(
        check_json(serde_json::json!({ "participantJoined": { "room": room(),
            "participant": { "sid": "PA_1", "attributes": { long_text.clone(): "v" } } } })),
        &["participantJoined.participant.attributes: a map key of 65537 bytes"],
    );
    rejected(
        check_json(serde_json::json!({ "participantJoined": { "room": room(),
            "participant": { "sid": "PA_1", "attributes": { "k": long_text } } } })),
        &["participantJoined.participant.attributes[\"k\"]: 65537 bytes"],
    );
}

/// `value.pipe(f)` = `f(value)`, to edit a JSON literal inline.
trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}

impl Pipe for serde_json::Value {}

#[test]
fn recorder_items_follow_the_same_rules() {
    let limits = Limits::default();
    let checker = Checker::new(&limits, NOW);
    let stat = lk::AnalyticsStat { score: f32::INFINITY, ..Default::default() };
    let error = checker.stat("stats[2]", &stat, StatKind::Window).expect_err("rejected");
    assert!(error.starts_with("stats[2].score: inf is not a finite number"), "{error}");
    let stat = lk::AnalyticsStat {
        streams: vec![lk::AnalyticsStream { padding_bytes: u64::MAX, ..Default::default() }],
        ..Default::default()
    };
    let error = checker.stat("stats[0]", &stat, StatKind::Window).expect_err("rejected");
    assert!(error.contains("stats[0].streams[0].paddingBytes"), "{error}");
    let event = lk::AnalyticsEvent {
        id: "AE_1".into(),
        timestamp: Some(NOW.to_timestamp()),
        rtp_stats: Some(lk::RtpStats { jitter_max: f64::NAN, ..Default::default() }),
        ..Default::default()
    };
    let error = checker.event("events[1]", &event).expect_err("rejected");
    assert!(error.starts_with("events[1].rtpStats.jitterMax: NaN"), "{error}");
    let event = lk::AnalyticsEvent {
        timestamp: Some(Timestamp { seconds: 1, nanos: 0 }),
        ..Default::default()
    };
    let error = checker.event("events[0]", &event).expect_err("rejected");
    assert!(error.starts_with("events[0].timestamp:"), "{error}");
    let rooms = lk::AnalyticsNodeRooms {
        node_id: "n".repeat(300),
        timestamp: Some(NOW.to_timestamp()),
        ..Default::default()
    };
    let error = checker.node_rooms(&rooms).expect_err("rejected");
    assert!(error.starts_with("nodeId: 300 bytes"), "{error}");
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        -10.0..10.0f64,
        any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A score passes exactly when it is finite and in 0..=5.
    #[test]
    fn a_score_passes_exactly_when_finite_and_in_range(score in any_f64()) {
        let score = score as f32;
        let limits = Limits::default();
        let stat = lk::AnalyticsStat { score, ..Default::default() };
        let verdict = Checker::new(&limits, NOW).stat("s", &stat, StatKind::Sample);
        prop_assert_eq!(verdict.is_ok(), score.is_finite() && (0.0..=5.0).contains(&score), "{:?}", verdict);
    }

    /// A string passes exactly when it is within its cap.
    #[test]
    fn ids_pass_exactly_within_the_cap(len in 0usize..600, cap in 16usize..512) {
        let limits = Limits { max_id_bytes: cap, ..Limits::default() };
        let verdict = Checker::new(&limits, NOW).id(|| "f".to_owned(), &"é".repeat(len / 2));
        prop_assert_eq!(verdict.is_ok(), (len / 2) * 2 <= cap);
    }

    /// What the walker passes, the store can render as JSON with no float lost to `null`; what
    /// the store cannot render, the walker refuses.
    #[test]
    fn what_passes_renders(
        rate in any_f64(),
        drift in any_f64(),
        percent in any_f64(),
        seconds in prop_oneof![Just(i64::MIN), Just(i64::MAX), -1_000_000_000_000i64..1_000_000_000_000],
        nanos in prop_oneof![Just(-1i32), Just(1_000_000_000), 0..1_000_000_000i32],
    ) {
        let stats = lk::RtpStats {
            packet_rate: rate,
            packet_loss_percentage: percent as f32,
            packet_drift: Some(lk::RtpDrift { drift_ms: drift, ..Default::default() }),
            last_pli: Some(Timestamp { seconds, nanos }),
            ..Default::default()
        };
        let event = lk::AnalyticsEvent { rtp_stats: Some(stats), ..Default::default() };
        let limits = Limits::default();
        let verdict = Checker::new(&limits, NOW).walk("e", &event);
        let rendered = serde_json::to_string(&event);
        if rendered.is_err() {
            prop_assert!(verdict.is_err());
        }
        if verdict.is_ok() {
            let text = rendered.expect("what passes renders");
            prop_assert!(!text.contains("null"), "{}", text);
            prop_assert!(rate.is_finite() && rate >= 0.0 && drift.is_finite());
        }
    }
}

#[test]
fn a_sample_covers_at_most_five_minutes() {
    let stream = |start: i64| {
        stats_call(serde_json::json!({ "streams": [ {
            "startTime": serde_json::to_value(NOW.plus_millis(start).to_timestamp()).unwrap(),
            "endTime": serde_json::to_value(NOW.to_timestamp()).unwrap(),
        } ] }))
    };
    check_json(stream(-300_000)).expect("five minutes");
    rejected(
        check_json(stream(-301_000)),
        &["trackStats.stat.streams[0].endTime", "covers 301 s, more than the 300 s"],
    );
}
