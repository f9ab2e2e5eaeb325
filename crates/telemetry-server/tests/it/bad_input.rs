//! Bad input on every ingest path: each gets its documented status and a message naming the
//! problem, one bad call never rejects the others, and what was accepted before stays intact.

use std::io::Write as _;

use prost::Message as _;
use serde_json::{Value, json};
use telemetry_proto::v1;

use crate::support::{ADMIN, Lifecycle, ROOM, TestApp};

const SMALL_LIMITS: &str = "[http]\nmax_body_bytes = 65536\nmax_decompressed_bytes = 262144\n";

async fn post(
    app: &TestApp,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request =
        app.client.post(app.url("/v1/telemetry")).bearer_auth(TestApp::token(ADMIN)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// What the store holds, to show nothing changed.
async fn snapshot(app: &TestApp) -> (Value, Value) {
    (
        app.get_ok(&format!("/v1/rooms/{ROOM}")).await,
        app.get_ok(&format!("/v1/rooms/{ROOM}/events?limit=1000")).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_cannot_be_read_are_refused_whole_and_change_nothing() {
    let app = TestApp::start_with(SMALL_LIMITS).await;
    let (status, _) =
        app.ingest_protobuf(&v1::TelemetryBatch { calls: Lifecycle::new().calls() }).await;
    assert_eq!(status, 200);
    app.flush().await;
    let before = snapshot(&app).await;

    let json = Some("application/json");
    let protobuf = Some("application/x-protobuf");
    let bomb = gzip(&vec![b' '; 4 * 1024 * 1024]);
    assert!(bomb.len() < 65536, "a small compressed body that inflates to 4 MiB");
    // (name, content type, content encoding, body, status, message)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            json,
            None,
            b"{\"calls\": [".to_vec(),
            400,
            "body: not a TelemetryBatch",
        ),
        ("not an object", json, None, b"[1, 2]".to_vec(), 400, "body: not a TelemetryBatch"),
        ("no calls field", json, None, b"{\"call\": []}".to_vec(), 400, "missing field `calls`"),
        (
            "calls not a list",
            json,
            None,
            b"{\"calls\": 7}".to_vec(),
            400,
            "body: not a TelemetryBatch",
        ),
        ("not UTF-8", json, None, vec![0xff, 0xfe, 0xfd], 400, "not UTF-8"),
        (
            "protobuf garbage",
            protobuf,
            None,
            vec![0x0a, 0xff, 0xff, 0xff, 0x0f],
            400,
            "not a protobuf TelemetryBatch",
        ),
        ("oversize body", json, None, vec![b' '; 70_000], 413, "`http.max_body_bytes`"),
        (
            "corrupt gzip",
            json,
            Some("gzip"),
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            400,
            "invalid gzip data",
        ),
        ("gzip bomb", json, Some("gzip"), bomb, 413, "`http.max_decompressed_bytes`"),
        (
            "wrong content type",
            Some("text/plain"),
            None,
            b"{\"calls\": []}".to_vec(),
            415,
            "`Content-Type: text/plain`",
        ),
        ("no content type", None, None, b"{\"calls\": []}".to_vec(), 415, "missing `Content-Type`"),
        (
            "unknown encoding",
            json,
            Some("br"),
            b"{\"calls\": []}".to_vec(),
            415,
            "`Content-Encoding: br`",
        ),
    ];
    for (name, content_type, encoding, body, status, message) in cases {
        let (got, answer) = post(&app, content_type, encoding, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap_or("");
        assert!(text.contains(message), "{name}: {text:?} should contain {message:?}");
    }
    assert_eq!(snapshot(&app).await, before, "nothing accepted before was changed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_rejected_alone_naming_the_field() {
    let app = TestApp::start().await;
    let (status, _) =
        app.ingest_protobuf(&v1::TelemetryBatch { calls: Lifecycle::new().calls() }).await;
    assert_eq!(status, 200);
    let before = snapshot(&app).await;
    let future = humantime::format_rfc3339(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string();
    // A minute ago, plus `seconds`.
    let recent = |seconds: u64| {
        humantime::format_rfc3339(
            std::time::SystemTime::now() - std::time::Duration::from_secs(60)
                + std::time::Duration::from_secs(seconds),
        )
        .to_string()
    };
    let body = json!({ "calls": [
        { "roomStarted": { "room": { "sid": "RM_good0000001", "name": "good" } } },
        { "roomStarted": { "room": { "sid": "RM_x", "creationTime": true } } },
        { "nodeId": "n1" },
        { "roomStarted": { "room": { "sid": "RM_y" } }, "roomEnded": { "room": { "sid": "RM_y" } } },
        { "trackStats": { "roomId": "RM_1", "key": { "participantId": "PA_1", "trackId": "TR_1", "streamType": "SIDEWAYS" }, "stat": {} } },
        { "trackStats": { "roomId": "RM_1", "key": { "participantId": "PA_1", "trackId": "TR_1", "streamType": 7 }, "stat": {} } },
        { "participantJoined": { "room": { "sid": "RM_1" }, "participant": { "identity": "no-sid" } } },
        { "at": future, "roomStarted": { "room": { "sid": "RM_z" } } },
        { "at": "yesterday", "roomStarted": { "room": { "sid": "RM_z" } } },
        { "trackStats": { "roomId": "RM_1", "key": { "participantId": "PA_1", "trackId": "TR_1" },
            "stat": { "streams": [ { "startTime": recent(10), "endTime": recent(0) } ] } } },
        { "roomStarted": { "room": { "sid": "RM_good0000002", "name": "good-too", "someFutureField": 1 } }, "anotherUnknown": [] },
        "not an object",
    ]});
    let (status, answer) = app.ingest_json(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (r["index"].as_u64().expect("index"), r["error"].as_str().expect("error").to_owned())
        })
        .collect();
    let expected: [(u64, &str); 10] = [
        (1, "roomStarted.room.creationTime"),
        (2, "no member of `call`"),
        (3, "more than one member of `call`"),
        (4, "trackStats.key.streamType"),
        (5, "trackStats.key.streamType: invalid value: integer `7`"),
        (6, "participantJoined.participant.sid: required"),
        (7, "at:"),
        (8, "at"),
        (9, "trackStats.stat.streams[0].endTime: before `startTime`"),
        (11, "invalid type"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
    for ((index, error), (expected_index, expected_text)) in rejected.iter().zip(expected) {
        assert_eq!(*index, expected_index, "{error}");
        assert!(
            error.contains(expected_text),
            "call {index}: {error:?} should contain {expected_text:?}"
        );
    }
    assert!(
        rejected[3].1.contains("SIDEWAYS"),
        "the unknown enum name is quoted: {}",
        rejected[3].1
    );
    // The good calls landed; what was there before is untouched.
    assert_eq!(app.get_ok("/v1/rooms/RM_good0000001").await["room"]["name"], "good");
    assert_eq!(
        app.get_ok("/v1/rooms/RM_good0000002").await["room"]["name"],
        "good-too",
        "unknown fields are ignored"
    );
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_call_with_two_members_is_rejected() {
    let app = TestApp::start().await;
    let call = v1::TelemetryCall {
        call: Some(v1::telemetry_call::Call::RoomStarted(v1::RoomCall {
            room: Some(telemetry_core::proto::Room { sid: "RM_two".into(), ..Default::default() }),
        })),
        ..Default::default()
    };
    let mut two = call.encode_to_vec();
    // Append a second member: field 12 (roomEnded), an empty RoomCall.
    two.extend([0x62, 0x00]);
    let good = v1::TelemetryCall {
        call: Some(v1::telemetry_call::Call::RoomStarted(v1::RoomCall {
            room: Some(telemetry_core::proto::Room { sid: "RM_one".into(), ..Default::default() }),
        })),
        ..Default::default()
    };
    let frames =
        v1::TelemetryBatchFrames { calls: vec![two, good.encode_to_vec(), vec![0x0a, 0x05]] };
    let (status, answer) =
        post(&app, Some("application/x-protobuf"), None, frames.encode_to_vec()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["index"], 0);
    assert!(
        answer["rejected"][0]["error"].as_str().unwrap_or("").contains("roomStarted, roomEnded"),
        "{answer}"
    );
    assert_eq!(answer["rejected"][1]["index"], 2);
    assert!(
        answer["rejected"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a protobuf TelemetryCall"),
        "{answer}"
    );
    app.stop().await;
}

/// More calls than `http.max_calls_per_request` in one request is refused whole with 413 before
/// any call takes effect, over JSON, protobuf, gzip and gRPC; a gzip request of a million calls
/// is refused without being decoded call by call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_call_cap_are_refused_whole() {
    let app = TestApp::start_with("[http]\nmax_calls_per_request = 5\n").await;
    let room = |n: usize| json!({ "roomStarted": { "room": { "sid": format!("RM_cap{n:04}"), "name": format!("cap-{n}") } } });
    let six: Vec<Value> = (0..6).map(room).collect();
    let (status, body) = app.ingest_json(&json!({ "calls": six })).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.to_string().contains("http.max_calls_per_request"), "names the limit: {body}");
    let protobuf_six = v1::TelemetryBatch {
        calls: (0..6).map(|n| serde_json::from_value(room(n)).expect("a call")).collect(),
    };
    let (status, body) = app.ingest_protobuf(&protobuf_six).await;
    assert_eq!(status, 413, "{body}");
    // A million empty calls, gzip: small on the wire, refused by count.
    let million = format!("{{\"calls\":[{}{{}}]}}", "{},".repeat(999_999));
    let compressed = gzip(million.as_bytes());
    let (status, body) = post(&app, Some("application/json"), Some("gzip"), compressed).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.to_string().contains("1000000 calls"), "{body}");
    // gRPC: the message is refused.
    let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let mut request = tonic::Request::new(tokio_stream::iter(vec![protobuf_six.clone()]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", TestApp::token(ADMIN)).parse().expect("metadata"),
    );
    let status = client.ingest(request).await.expect_err("refused");
    assert!(status.message().contains("http.max_calls_per_request"), "{status:?}");
    // Nothing took effect; five calls are fine.
    let (status, _) = app.get("/v1/rooms/RM_cap0000").await;
    assert_eq!(status, 404, "no call of a refused request took effect");
    let five: Vec<Value> = (0..5).map(room).collect();
    let (status, body) = app.ingest_json(&json!({ "calls": five })).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(5)), "{body}");
    app.stop().await;
}

/// An answer lists the first 100 rejected calls and says how many there were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_lists_are_capped_and_counted() {
    let app = TestApp::start().await;
    let mut calls: Vec<Value> = (0..150).map(|_| json!({})).collect();
    calls.push(json!({ "roomStarted": { "room": { "sid": "RM_counted", "name": "counted" } } }));
    let (status, body) = app.ingest_json(&json!({ "calls": calls })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejectedCount"], 150);
    let rejected = body["rejected"].as_array().expect("a list");
    assert_eq!(rejected.len(), 100, "the first 100 only");
    assert_eq!(rejected[0]["index"], 0);
    assert_eq!(rejected[99]["index"], 99);
    let (status, body) = app.ingest_json(&json!({ "calls": [] })).await;
    assert_eq!((status, body["rejectedCount"].as_u64()), (200, Some(0)), "{body}");
    app.stop().await;
}

/// Bad numbers, times and over-long strings: each call is rejected alone naming the field, over
/// JSON, protobuf and gRPC; its neighbours are accepted and what was stored before is unchanged
/// (and stays renderable: no NaN reaches the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_numbers_times_and_long_strings_are_rejected_alone_naming_the_field() {
    use telemetry_core::proto as lk;
    use v1::telemetry_call::Call as Member;

    let app = TestApp::start().await;
    let (status, _) =
        app.ingest_protobuf(&v1::TelemetryBatch { calls: Lifecycle::new().calls() }).await;
    assert_eq!(status, 200);
    app.flush().await;
    let before = snapshot(&app).await;
    let stats_before = app.get_ok(&format!("/v1/stats?roomSid={ROOM}&from=0")).await;

    let good = |n: u32| json!({ "roomStarted": { "room": { "sid": format!("RM_num{n:09}"), "name": format!("good-{n}") } } });
    let stat = |stat: Value| {
        json!({ "trackStats": { "roomId": ROOM,
        "key": { "participantId": crate::support::ALICE, "trackId": crate::support::VIDEO, "streamType": "UPSTREAM" },
        "stat": stat } })
    };
    let rtp = |stats: Value| {
        json!({ "trackPublishRtpStats": { "room": { "sid": ROOM },
        "participantId": crate::support::ALICE, "trackId": crate::support::VIDEO, "stats": stats } })
    };
    let long_id = "x".repeat(257);
    // (call, the rejection's text); `None`: accepted.
    let cases: Vec<(Value, Option<&str>)> = vec![
        (good(1), None),
        (
            stat(json!({ "score": 1e39 })),
            Some("trackStats.stat.score: inf is not a finite number in 0..=5"),
        ),
        (
            stat(json!({ "minScore": "NaN" })),
            Some("trackStats.stat.minScore: NaN is not a finite number"),
        ),
        (
            stat(json!({ "score": 7 })),
            Some("trackStats.stat.score: 7 is not a finite number in 0..=5"),
        ),
        (
            stat(json!({ "streams": [ { "rtt": 4_294_967_295u32 } ] })),
            Some("trackStats.stat.streams[0].rtt:"),
        ),
        (
            stat(json!({ "streams": [ { "jitter": -1 } ] })),
            Some("trackStats.stat.streams[0].jitter:"),
        ),
        (
            rtp(json!({ "bitrate": -1 })),
            Some("trackPublishRtpStats.stats.bitrate: -1 is not a finite number of at least 0"),
        ),
        (
            rtp(json!({ "packetRate": "Infinity" })),
            Some("trackPublishRtpStats.stats.packetRate: inf"),
        ),
        (
            rtp(json!({ "packetLossPercentage": 101 })),
            Some(
                "trackPublishRtpStats.stats.packetLossPercentage: 101 is not a finite number in 0..=100",
            ),
        ),
        (
            json!({ "at": "1970-01-02T00:00:00Z", "roomEnded": { "room": { "sid": ROOM } } }),
            Some("at:"),
        ),
        (
            json!({ "roomStarted": { "room": { "sid": "RM_negative", "creationTime": "-5" } } }),
            Some("roomStarted.room.creationTime: -5"),
        ),
        (
            json!({ "nodeId": long_id, "roomStarted": { "room": { "sid": "RM_longnode" } } }),
            Some("nodeId: 257 bytes, more than the 256 allowed (`limits.max_id_bytes`)"),
        ),
        (
            json!({ "roomEnded": { "room": { "sid": long_id } } }),
            Some("roomEnded.room.sid: 257 bytes"),
        ),
        (
            json!({ "participantLeft": { "room": { "sid": ROOM }, "participant": { "sid": crate::support::ALICE, "identity": long_id } } }),
            Some("participantLeft.participant.identity: 257 bytes"),
        ),
        (
            json!({ "participantJoined": { "room": { "sid": ROOM }, "participant": { "sid": "PA_meta", "metadata": "m".repeat(65537) } } }),
            Some(
                "participantJoined.participant.metadata: 65537 bytes, more than the 65536 allowed (`limits.max_text_bytes`)",
            ),
        ),
        (
            json!({ "trackSubscribeFailed": { "room": { "sid": ROOM }, "participantId": crate::support::BOB, "trackId": crate::support::VIDEO, "error": long_id } }),
            Some("trackSubscribeFailed.error: 257 bytes"),
        ),
        (stat(json!({})).pipe_country(&long_id), Some("trackStats.key.country: 257 bytes")),
        (good(2), None),
    ];
    let body = json!({ "calls": cases.iter().map(|(call, _)| call.clone()).collect::<Vec<_>>() });
    let (status, answer) = app.ingest_json(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected = answer["rejected"].as_array().expect("rejected");
    let expected: Vec<(usize, &str)> = cases
        .iter()
        .enumerate()
        .filter_map(|(index, (_, error))| error.map(|e| (index, e)))
        .collect();
    assert_eq!(rejected.len(), expected.len(), "{answer}");
    for (rejection, (index, text)) in rejected.iter().zip(expected) {
        assert_eq!(rejection["index"], index, "{rejection}");
        let error = rejection["error"].as_str().expect("error");
        assert!(error.contains(text), "call {index}: {error:?} should contain {text:?}");
    }

    // Protobuf: NaN and infinity, an invalid timestamp, a long guard.
    let room = || Some(lk::Room { sid: ROOM.into(), ..Default::default() });
    let stats_call = |stat: lk::AnalyticsStat| v1::TelemetryCall {
        call: Some(Member::TrackStats(v1::TrackStatsCall {
            room_id: ROOM.into(),
            key: Some(v1::StatsKey {
                participant_id: crate::support::ALICE.into(),
                track_id: crate::support::VIDEO.into(),
                stream_type: lk::StreamType::Upstream as i32,
                ..Default::default()
            }),
            stat: Some(stat),
            ..Default::default()
        })),
        ..Default::default()
    };
    let good_protobuf =
        |n: u32| -> v1::TelemetryCall { serde_json::from_value(good(n)).expect("a call") };
    let batch = v1::TelemetryBatch {
        calls: vec![
            stats_call(lk::AnalyticsStat { score: f32::NAN, ..Default::default() }),
            good_protobuf(3),
            stats_call(lk::AnalyticsStat {
                streams: vec![lk::AnalyticsStream {
                    end_time: Some(pbjson_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 1_000_000_000,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            v1::TelemetryCall {
                call: Some(Member::TrackPublishRtpStats(v1::TrackPublishRtpStatsCall {
                    room: room(),
                    participant_id: crate::support::ALICE.into(),
                    track_id: crate::support::VIDEO.into(),
                    stats: Some(lk::RtpStats {
                        jitter_max: f64::NEG_INFINITY,
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            },
            v1::TelemetryCall {
                call: Some(Member::ParticipantLeft(v1::ParticipantLeftCall {
                    room: room(),
                    participant: Some(lk::ParticipantInfo {
                        sid: crate::support::BOB.into(),
                        ..Default::default()
                    }),
                    guard: long_id.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            },
        ],
    };
    let (status, answer) = app.ingest_protobuf(&batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let errors: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (r["index"].as_u64().expect("index"), r["error"].as_str().expect("error").to_owned())
        })
        .collect();
    let expected = [
        (0, "trackStats.stat.score: NaN is not a finite number in 0..=5"),
        (2, "trackStats.stat.streams[0].endTime: not a valid timestamp"),
        (3, "trackPublishRtpStats.stats.jitterMax: -inf is not a finite number of at least 0"),
        (4, "participantLeft.guard: 257 bytes"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:?}");
    for ((index, error), (expected_index, text)) in errors.iter().zip(expected) {
        assert_eq!(*index, expected_index, "{error}");
        assert!(error.contains(text), "{error:?} should contain {text:?}");
    }

    // gRPC: the same over a stream; indexes count across the stream's messages.
    let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let first = v1::TelemetryBatch { calls: vec![good_protobuf(4)] };
    let second = v1::TelemetryBatch {
        calls: vec![
            stats_call(lk::AnalyticsStat { median_score: f32::INFINITY, ..Default::default() }),
            good_protobuf(5),
        ],
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![first, second]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", TestApp::token(ADMIN)).parse().expect("metadata"),
    );
    let summary = client.ingest(request).await.expect("ingest").into_inner();
    assert_eq!(summary.accepted, 2, "{summary:?}");
    assert_eq!(summary.rejected.len(), 1, "{summary:?}");
    assert_eq!(summary.rejected[0].index, 1);
    assert!(
        summary.rejected[0]
            .error
            .contains("trackStats.stat.medianScore: inf is not a finite number"),
        "{summary:?}"
    );

    // The good neighbours landed; what was stored before is unchanged, and still renders.
    for n in 1..=5 {
        assert_eq!(
            app.get_ok(&format!("/v1/rooms/RM_num{n:09}")).await["room"]["name"],
            format!("good-{n}")
        );
    }
    app.flush().await;
    assert_eq!(snapshot(&app).await, before);
    assert_eq!(app.get_ok(&format!("/v1/stats?roomSid={ROOM}&from=0")).await, stats_before);
    app.stop().await;
}

trait PipeCountry {
    fn pipe_country(self, country: &str) -> Self;
}

impl PipeCountry for Value {
    /// The `trackStats` call with its key's country set.
    fn pipe_country(mut self, country: &str) -> Self {
        self["trackStats"]["key"]["country"] = json!(country);
        self
    }
}

/// The caps come from `[limits]`: a deployment can lower (or raise) them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_caps_are_configurable() {
    let app = TestApp::start_with("[limits]\nmax_id_bytes = 20\nmax_text_bytes = 40\n").await;
    let body = json!({ "calls": [
        { "roomStarted": { "room": { "sid": "RM_twenty_bytes_ok1", "name": "short" } } },
        { "roomStarted": { "room": { "sid": "RM_twenty_one_bytes_x", "name": "short" } } },
        { "roomStarted": { "room": { "sid": "RM_meta", "metadata": "m".repeat(41) } } },
    ]});
    let (status, answer) = app.ingest_json(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert!(
        answer["rejected"][0]["error"].as_str().unwrap_or("").contains(
            "roomStarted.room.sid: 21 bytes, more than the 20 allowed (`limits.max_id_bytes`)"
        ),
        "{answer}"
    );
    assert!(answer["rejected"][1]["error"].as_str().unwrap_or("").contains(
        "roomStarted.room.metadata: 41 bytes, more than the 40 allowed (`limits.max_text_bytes`)"
    ), "{answer}");
    app.stop().await;
}
