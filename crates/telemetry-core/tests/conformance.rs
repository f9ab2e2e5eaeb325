//! Conformance of webhook signing with receivers we did not write: LiveKit's own
//! `WebhookReceiver` in Python (PyPI `livekit-api`) and Node (npm `livekit-server-sdk`), and the
//! Standard Webhooks reference library (PyPI `standardwebhooks`).
//!
//! Every webhook event the core produces is made by driving a `TelemetryService` through the
//! calls that produce it, serialized as the service sends it (protobuf JSON through pbjson),
//! signed with `telemetry_core::signing`, and handed to each receiver, which must parse it back
//! to the same event, and must reject a tampered body, a wrong secret and an expired signature.
//! One process per receiver checks every case (`tools/conformance/*`).
//!
//! How the receivers are found and when these tests run: `common/receivers.rs`. Without
//! `TELEMETRY_TEST_CONFORMANCE=1` they are skipped, so a bare `cargo test` passes on a machine
//! without Python or Node packages.

#[path = "common/receivers.rs"]
mod receivers;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use receivers::{run_receiver, tools};
use serde_json::{Value, json};
use telemetry_core::proto as lk;
use telemetry_core::signing::{livekit_authorization, standard_headers};
use telemetry_core::{
    CoreConfig, DEFAULT_GUARD, ManualClock, Output, TelemetryService, UnixMillis, webhook_names,
};

/// The API key that signs LiveKit webhooks here.
const KEY: &str = "APIconformance";
/// A long secret: PyJWT warns (`InsecureKeyLengthWarning`, on stderr) on HS256 keys under 32
/// bytes. (Node's `livekit-server-sdk` 2.19.2 accepted a 6-byte secret when tried; a long one
/// keeps every receiver quiet.)
const SECRET: &str = "secret-that-is-long-enough-0123456789";
const WRONG_SECRET: &str = "another-secret-that-is-long-enough-987";
/// The Standard Webhooks specification's example secret.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// `whsec_` + base64 of "second-secret-for-the-checks-32b".
const WRONG_STANDARD_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLWNoZWNrcy0zMmI=";
/// How far in the past an expired signature is made: beyond every receiver's tolerance
/// (token ttl 5 min + leeway 1 min for LiveKit; 5 min for Standard Webhooks).
const EXPIRED_BY_SECS: i64 = 600;

/// 2023-11-14T22:13:20Z: the service's clock, so payloads carry fixed times.
const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

// --- Realistic webhook events, produced by the service ---

fn version(unix_micro: i64, ticks: i32) -> Option<lk::TimedVersion> {
    Some(lk::TimedVersion { unix_micro, ticks })
}

fn room() -> lk::Room {
    lk::Room {
        sid: "RM_tdzTQ6Nn3Wb3".into(),
        name: "weekly-standup".into(),
        empty_timeout: 300,
        departure_timeout: 20,
        max_participants: 50,
        creation_time: T0.as_secs() - 120,
        creation_time_ms: T0.0 - 120_000,
        enabled_codecs: vec![
            lk::Codec { mime: "video/VP8".into(), ..Default::default() },
            lk::Codec { mime: "audio/opus".into(), ..Default::default() },
        ],
        metadata: r#"{"topic":"release \"2.0\" — café ☕"}"#.into(),
        num_participants: 2,
        num_publishers: 1,
        active_recording: true,
        version: version(T0.0 * 1000 - 120_000_000, 3),
        ..Default::default()
    }
}

fn camera_track() -> lk::TrackInfo {
    let layer =
        |quality: lk::VideoQuality, width, height, bitrate, ssrc, rid: &str| lk::VideoLayer {
            quality: quality as i32,
            width,
            height,
            bitrate,
            ssrc,
            rid: rid.into(),
            ..Default::default()
        };
    lk::TrackInfo {
        sid: "TR_VCq8Rz6dVTJx".into(),
        r#type: lk::TrackType::Video as i32,
        name: "camera".into(),
        width: 1280,
        height: 720,
        source: lk::TrackSource::Camera as i32,
        codecs: vec![lk::SimulcastCodecInfo {
            mime_type: "video/VP8".into(),
            mid: "1".into(),
            cid: "camera-vp8".into(),
            layers: vec![
                layer(lk::VideoQuality::Low, 320, 180, 150_000, 1_111, "q"),
                layer(lk::VideoQuality::Medium, 640, 360, 500_000, 2_222, "h"),
                layer(lk::VideoQuality::High, 1280, 720, 1_700_000, 3_333, "f"),
            ],
            ..Default::default()
        }],
        mime_type: "video/VP8".into(),
        mid: "1".into(),
        stream: "camera".into(),
        version: version(T0.0 * 1000 - 30_000_000, 0),
        ..Default::default()
    }
}

fn alice() -> lk::ParticipantInfo {
    lk::ParticipantInfo {
        sid: "PA_4ZrG8bDYqgm9".into(),
        identity: "alice@example.com".into(),
        state: lk::participant_info::State::Active as i32,
        tracks: vec![camera_track()],
        metadata: r#"{"avatar":"https://example.com/a.png"}"#.into(),
        joined_at: T0.as_secs() - 60,
        joined_at_ms: T0.0 - 60_000,
        name: "Alice Ångström".into(),
        version: 4,
        permission: Some(lk::ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_publish_sources: vec![
                lk::TrackSource::Camera as i32,
                lk::TrackSource::Microphone as i32,
            ],
            can_update_metadata: true,
            ..Default::default()
        }),
        region: "eu-central".into(),
        is_publisher: true,
        attributes: [("role".to_owned(), "host".to_owned())].into_iter().collect(),
        disconnect_reason: lk::DisconnectReason::ClientInitiated as i32,
        ..Default::default()
    }
}

/// A participant that joins but never becomes active (its left is `connection_aborted`).
fn bob() -> lk::ParticipantInfo {
    lk::ParticipantInfo {
        sid: "PA_bXo2Kc9sDmQ4".into(),
        identity: "agent-bob".into(),
        state: lk::participant_info::State::Joined as i32,
        joined_at: T0.as_secs() - 5,
        joined_at_ms: T0.0 - 5_000,
        kind: lk::participant_info::Kind::Agent as i32,
        disconnect_reason: lk::DisconnectReason::JoinFailure as i32,
        ..Default::default()
    }
}

fn egress(status: lk::EgressStatus) -> lk::EgressInfo {
    let ended = status == lk::EgressStatus::EgressComplete;
    lk::EgressInfo {
        egress_id: "EG_hNw8QjXm5tPa".into(),
        room_id: room().sid,
        room_name: room().name,
        status: status as i32,
        started_at: (T0.0 - 50_000) * 1_000_000,
        ended_at: if ended { T0.0 * 1_000_000 } else { 0 },
        updated_at: T0.0 * 1_000_000,
        file_results: if ended {
            vec![lk::FileInfo {
                filename: "recordings/weekly-standup.mp4".into(),
                started_at: (T0.0 - 50_000) * 1_000_000,
                ended_at: T0.0 * 1_000_000,
                duration: 50_000_000_000,
                size: 12_345_678,
                location: "s3://bucket/recordings/weekly-standup.mp4".into(),
            }]
        } else {
            Vec::new()
        },
        request: Some(lk::egress_info::Request::RoomComposite(lk::RoomCompositeEgressRequest {
            room_name: room().name,
            layout: "speaker".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn ingress(status: lk::ingress_state::Status) -> lk::IngressInfo {
    lk::IngressInfo {
        ingress_id: "IN_Rr3TfWq8ZkLm".into(),
        name: "stage camera".into(),
        stream_key: "sk_9aPq".into(),
        url: "rtmp://ingress.example.com/x".into(),
        input_type: lk::IngressInput::WhipInput as i32,
        enable_transcoding: Some(false),
        room_name: room().name,
        participant_identity: "stage".into(),
        participant_name: "Stage".into(),
        reusable: true,
        state: Some(lk::IngressState {
            status: status as i32,
            room_id: room().sid,
            started_at: (T0.0 - 10_000) * 1_000_000,
            updated_at: T0.0 * 1_000_000,
            resource_id: "resource-1".into(),
            ..Default::default()
        }),
        enabled: Some(true),
        ..Default::default()
    }
}

/// One webhook event of every name the core produces, from the calls that produce them.
fn webhook_events() -> Vec<lk::WebhookEvent> {
    let clock = Arc::new(ManualClock::new(T0));
    let (service, receiver) =
        TelemetryService::builder(CoreConfig { node_id: "node-a".into(), ..CoreConfig::default() })
            .clock(clock)
            .id_seed(7)
            .build();
    let meta = lk::AnalyticsClientMeta {
        region: "eu-central".into(),
        node: "node-a".into(),
        client_addr: "203.0.113.7".into(),
        client_connect_time: 180,
        connection_type: "udp".into(),
        ..Default::default()
    };
    service.room_started(room());
    service.participant_joined(room(), alice(), None, Some(meta.clone()), true, DEFAULT_GUARD);
    service.participant_active(room(), alice(), Some(meta), false, DEFAULT_GUARD);
    service.participant_joined(room(), bob(), None, None, true, DEFAULT_GUARD);
    service.track_published(room(), &alice().sid, &alice().identity, camera_track(), true);
    service.egress_started(egress(lk::EgressStatus::EgressStarting));
    service.egress_updated(egress(lk::EgressStatus::EgressActive));
    service.ingress_started(ingress(lk::ingress_state::Status::EndpointPublishing));
    service.ingress_ended(ingress(lk::ingress_state::Status::EndpointInactive));
    service.egress_ended(egress(lk::EgressStatus::EgressComplete));
    service.track_unpublished(room(), &alice().sid, &alice().identity, camera_track(), true, true);
    service.participant_left(room(), alice(), true, DEFAULT_GUARD);
    service.participant_left(room(), bob(), true, DEFAULT_GUARD);
    service.room_ended(room());

    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
    let events: Vec<lk::WebhookEvent> = outputs
        .into_iter()
        .filter_map(|sequenced| match sequenced.output {
            Output::Call(call) => call.webhook.map(|webhook| webhook.decode()),
            _ => None,
        })
        .collect();
    let names: BTreeSet<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(
        names,
        webhook_names::ALL.into_iter().collect::<BTreeSet<_>>(),
        "one event of every name the core produces"
    );
    assert_eq!(events.len(), webhook_names::ALL.len());
    events
}

fn body(event: &lk::WebhookEvent) -> String {
    String::from_utf8(serde_json::to_vec(event).expect("a webhook serializes")).expect("utf-8")
}

/// The same body with the event id changed: still valid JSON, one byte different.
fn tampered(event: &lk::WebhookEvent) -> String {
    let id = &event.id;
    let changed = format!("{}{}", &id[..id.len() - 1], if id.ends_with('z') { 'y' } else { 'z' });
    let tampered =
        body(event).replacen(&format!(r#""id":"{id}""#), &format!(r#""id":"{changed}""#), 1);
    assert_ne!(tampered, body(event));
    tampered
}

// --- Expectations ---

/// Why a case must be rejected, and how each receiver words it (the pinned versions in
/// tools/setup-conformance.sh); checking the reason proves the rejection is not, say, a parse
/// error.
#[derive(Clone, Copy, Debug)]
enum Reject {
    TamperedBody,
    WrongSecret,
    Expired,
}

#[derive(Clone, Copy, Debug)]
enum Receiver {
    LiveKitPython,
    LiveKitNode,
    StandardPython,
}

impl Reject {
    fn expected_error(self, receiver: Receiver) -> &'static str {
        match (receiver, self) {
            (Receiver::LiveKitPython, Reject::TamperedBody) => "Exception: hash mismatch",
            (Receiver::LiveKitPython, Reject::WrongSecret) => {
                "InvalidSignatureError: Signature verification failed"
            }
            (Receiver::LiveKitPython, Reject::Expired) => {
                "ExpiredSignatureError: Signature has expired"
            }
            (Receiver::LiveKitNode, Reject::TamperedBody) => {
                "Error: sha256 checksum of body does not match"
            }
            (Receiver::LiveKitNode, Reject::WrongSecret) => {
                "JWSSignatureVerificationFailed: signature verification failed"
            }
            (Receiver::LiveKitNode, Reject::Expired) => {
                "JWTExpired: \"exp\" claim timestamp check failed"
            }
            (Receiver::StandardPython, Reject::TamperedBody | Reject::WrongSecret) => {
                "WebhookVerificationError: No matching signature found"
            }
            (Receiver::StandardPython, Reject::Expired) => {
                "WebhookVerificationError: Message timestamp too old"
            }
        }
    }
}

enum Expect {
    /// Parsed back to this event, every field intact.
    Event(Box<lk::WebhookEvent>),
    /// Accepted with this name and id (the body is not ours to compare field by field).
    Accepted {
        event: String,
        id: String,
    },
    Rejected(Reject),
}

struct Case {
    request: Value,
    expect: Expect,
}

fn name(expect: &str, event: &lk::WebhookEvent) -> String {
    format!("{expect} {} {}", event.event, event.id)
}

/// Numbers compared by value (`1` and `1.0` are the same number to every JSON reader).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Number(number) => json!(number.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(fields) => Value::Object(
            fields.iter().map(|(key, value)| (key.clone(), normalized(value))).collect(),
        ),
        other => other.clone(),
    }
}

/// The ids a LiveKit receiver prints back, as they are in `event`.
fn expected_ids(event: &lk::WebhookEvent) -> Value {
    json!({
        "event": event.event,
        "id": event.id,
        "createdAt": event.created_at.to_string(),
        "roomSid": event.room.as_ref().map_or("", |room| &room.sid),
        "roomName": event.room.as_ref().map_or("", |room| &room.name),
        "participantSid": event.participant.as_ref().map_or("", |p| &p.sid),
        "participantIdentity": event.participant.as_ref().map_or("", |p| &p.identity),
        "trackSid": event.track.as_ref().map_or("", |track| &track.sid),
        "egressId": event.egress_info.as_ref().map_or("", |info| &info.egress_id),
        "ingressId": event.ingress_info.as_ref().map_or("", |info| &info.ingress_id),
    })
}

fn check(receiver: Receiver, cases: &[Case], results: &[Value]) {
    let mut failures = Vec::new();
    for (case, result) in cases.iter().zip(results) {
        let name = &case.request["name"];
        let error = result["error"].as_str().unwrap_or_default();
        match &case.expect {
            Expect::Event(event) => {
                if result["ok"] != true {
                    failures.push(format!("{name}: rejected: {error}"));
                    continue;
                }
                let ids = expected_ids(event);
                for (field, expected) in ids.as_object().expect("object") {
                    if &result[field] != expected {
                        failures.push(format!(
                            "{name}: {field} is {} instead of {expected}",
                            result[field]
                        ));
                    }
                }
                let ours = serde_json::to_value(event).expect("json");
                if normalized(&result["json"]) != normalized(&ours) {
                    failures.push(format!(
                        "{name}: the receiver's rendering differs\n  ours:   {ours}\n  theirs: {}",
                        result["json"]
                    ));
                }
            }
            Expect::Accepted { event, id } => {
                if result["ok"] != true || result["event"] != *event || result["id"] != *id {
                    failures.push(format!("{name}: not accepted as {event} {id}: {result}"));
                }
            }
            Expect::Rejected(reason) => {
                let expected = reason.expected_error(receiver);
                if result["ok"] != false || !error.starts_with(expected) {
                    failures
                        .push(format!("{name}: expected a rejection `{expected}`, got {result}"));
                }
            }
        }
    }
    // Shown with `--nocapture`: what each receiver said, for the record.
    for (case, result) in cases.iter().zip(results) {
        if result["ok"] == false {
            eprintln!("{receiver:?} rejected {}: {}", case.request["name"], result["error"]);
        }
    }
    assert!(failures.is_empty(), "{receiver:?}:\n{}", failures.join("\n"));
}

// --- Cases ---

fn livekit_case(name: String, body: String, authorization: String, expect: Expect) -> Case {
    Case {
        request: json!({
            "name": name, "body": body, "authorization": authorization,
            "key": KEY, "secret": SECRET,
        }),
        expect,
    }
}

/// Every event, accepted; then each rejected three ways; then a body from a newer server.
fn livekit_cases() -> Vec<Case> {
    let now = now_secs();
    let sign = |body: &str, secret: &str, at: i64| {
        livekit_authorization(KEY, secret, body.as_bytes(), at).expect("signs")
    };
    let mut cases = Vec::new();
    for event in webhook_events() {
        let body = body(&event);
        cases.push(livekit_case(
            name("accept", &event),
            body.clone(),
            sign(&body, SECRET, now),
            Expect::Event(Box::new(event.clone())),
        ));
        cases.push(livekit_case(
            name("tampered body", &event),
            tampered(&event),
            sign(&body, SECRET, now),
            Expect::Rejected(Reject::TamperedBody),
        ));
        cases.push(livekit_case(
            name("wrong secret", &event),
            body.clone(),
            sign(&body, WRONG_SECRET, now),
            Expect::Rejected(Reject::WrongSecret),
        ));
        cases.push(livekit_case(
            name("expired", &event),
            body.clone(),
            sign(&body, SECRET, now - EXPIRED_BY_SECS),
            Expect::Rejected(Reject::Expired),
        ));
    }
    // A newer server may add fields and enum values: LiveKit's receivers must still accept.
    let newer = json!({
        "event": "participant_joined",
        "id": "EV_newerServer01",
        "createdAt": "1700000000",
        "room": {"sid": "RM_1", "name": "demo", "futureRoomField": {"nested": [1, 2]}},
        "participant": {"sid": "PA_1", "identity": "alice", "state": "FUTURE_STATE",
                        "kind": "FUTURE_KIND"},
        "futureTopLevelField": "x",
    })
    .to_string();
    cases.push(livekit_case(
        "accept newer server fields and enum names".into(),
        newer.clone(),
        sign(&newer, SECRET, now),
        Expect::Accepted { event: "participant_joined".into(), id: "EV_newerServer01".into() },
    ));
    cases
}

fn standard_case(
    name: String,
    body: String,
    secret: &str,
    at: i64,
    id: &str,
    expect: Expect,
) -> Case {
    let signed = standard_headers(secret, id, at, body.as_bytes()).expect("signs");
    let headers: serde_json::Map<String, Value> =
        signed.pairs().into_iter().map(|(name, value)| (name.to_owned(), json!(value))).collect();
    Case {
        request: json!({
            "name": name, "body": body, "headers": headers, "secret": STANDARD_SECRET,
        }),
        expect,
    }
}

fn standard_cases() -> Vec<Case> {
    let now = now_secs();
    let mut cases = Vec::new();
    for event in webhook_events() {
        let body = body(&event);
        let accepted = || Expect::Accepted { event: event.event.clone(), id: event.id.clone() };
        cases.push(standard_case(
            name("accept", &event),
            body.clone(),
            STANDARD_SECRET,
            now,
            &event.id,
            accepted(),
        ));
        let mut tampered_case = standard_case(
            name("tampered body", &event),
            body.clone(),
            STANDARD_SECRET,
            now,
            &event.id,
            Expect::Rejected(Reject::TamperedBody),
        );
        tampered_case.request["body"] = json!(tampered(&event));
        cases.push(tampered_case);
        cases.push(standard_case(
            name("wrong secret", &event),
            body.clone(),
            WRONG_STANDARD_SECRET,
            now,
            &event.id,
            Expect::Rejected(Reject::WrongSecret),
        ));
        cases.push(standard_case(
            name("expired", &event),
            body,
            STANDARD_SECRET,
            now - EXPIRED_BY_SECS,
            &event.id,
            Expect::Rejected(Reject::Expired),
        ));
    }
    cases
}

fn requests(cases: &[Case]) -> Vec<Value> {
    cases.iter().map(|case| case.request.clone()).collect()
}

// --- The checks ---

#[test]
fn livekit_python_receiver_accepts_our_webhooks_and_rejects_tampering() {
    let Some(tools) = tools() else { return };
    let cases = livekit_cases();
    let results = run_receiver(
        &tools.python,
        &tools.dir.join("verify_livekit.py"),
        &tools.dir,
        &requests(&cases),
    );
    check(Receiver::LiveKitPython, &cases, &results);
}

#[test]
fn livekit_node_receiver_accepts_our_webhooks_and_rejects_tampering() {
    let Some(tools) = tools() else { return };
    let cases = livekit_cases();
    let results = run_receiver(
        Path::new("node"),
        &tools.dir.join("verify_livekit.mjs"),
        &tools.dir,
        &requests(&cases),
    );
    check(Receiver::LiveKitNode, &cases, &results);
}

#[test]
fn standard_webhooks_library_accepts_our_signatures_and_rejects_tampering() {
    let Some(tools) = tools() else { return };
    let cases = standard_cases();
    let results = run_receiver(
        &tools.python,
        &tools.dir.join("verify_standard.py"),
        &tools.dir,
        &requests(&cases),
    );
    check(Receiver::StandardPython, &cases, &results);
}
