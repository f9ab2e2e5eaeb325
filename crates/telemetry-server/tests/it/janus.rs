//! `POST /v1/ingest/janus` end to end with a real capture of Janus's sample event handler (moved
//! to now): rooms, participants, tracks, stats and webhooks through the query API and a
//! receiver, with grouping on and off and gzip; a restart of the service in the middle of the
//! call; and bad input: malformed events, unknown types and plugins, deep nesting, a huge array,
//! wrong credentials, each with a clear error and nothing accepted before lost.

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{ADMIN, INGESTER, READER, TestApp, TestReceiver, endpoint_config};

const CAPTURE: &str =
    include_str!("../../../telemetry-janus/tests/data/capture-echotest-videoroom.jsonl");

/// The VideoRoom publishers' handles in the capture, and their video's last `bytes-received`.
const PROBE0_VIDEO_BYTES: u64 = 457_353;

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// The capture's events, moved so that its last event happened a second ago.
fn capture_now() -> Vec<Value> {
    let mut events: Vec<Value> =
        CAPTURE.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let last = events.iter().filter_map(|event| event["timestamp"].as_u64()).max().expect("events");
    let shift = now_micros() - 1_000_000 - last;
    for event in &mut events {
        let at = event["timestamp"].as_u64().expect("a timestamp");
        event["timestamp"] = json!(at + shift);
    }
    events
}

fn basic((key, secret): (&str, &str)) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}")))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Posts `body` as Janus does: JSON, `Authorization: authorization`, gzip if asked.
async fn post_raw(
    app: &TestApp,
    authorization: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    compress: bool,
) -> (u16, Value) {
    let mut request =
        app.client.post(app.url("/v1/ingest/janus")).header("content-type", content_type);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = if compress {
        request.header("content-encoding", "gzip").body(gzip(&body))
    } else {
        request.body(body)
    };
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).expect("JSON");
    post_raw(app, Some(&basic(INGESTER)), "application/json", bytes, false).await
}

/// Sends `events` as the sample event handler does: one per request, or grouped (at most 100
/// per request, gzip-compressed). Returns the summed counts.
async fn send(app: &TestApp, events: &[Value], grouping: bool) -> (u64, u64, Vec<Value>) {
    let (mut accepted, mut ignored, mut rejected) = (0, 0, Vec::new());
    let requests: Vec<(Value, bool)> = if grouping {
        events.chunks(100).map(|chunk| (Value::Array(chunk.to_vec()), true)).collect()
    } else {
        events.iter().map(|event| (event.clone(), false)).collect()
    };
    for (body, compress) in requests {
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let (status, answer) =
            post_raw(app, Some(&basic(INGESTER)), "application/json", bytes, compress).await;
        assert_eq!(status, 200, "{answer}");
        accepted += answer["accepted"].as_u64().expect("accepted");
        ignored += answer["ignored"].as_u64().expect("ignored");
        rejected.extend(answer["rejected"].as_array().expect("rejected").iter().cloned());
    }
    (accepted, ignored, rejected)
}

async fn room_by_name(app: &TestApp, name: &str) -> Value {
    let rooms = app.get_ok("/v1/rooms?limit=100").await;
    let room = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|room| room["name"] == name)
        .unwrap_or_else(|| panic!("no room `{name}` in {rooms}"))
        .clone();
    app.get_ok(&format!("/v1/rooms/{}", room["sid"].as_str().expect("a sid"))).await
}

fn webhook_events(received: &[crate::support::Received]) -> Vec<(String, String)> {
    received
        .iter()
        .map(|request| {
            let body = request.json();
            let room = body["room"]["name"].as_str().unwrap_or("").to_owned();
            (body["event"].as_str().unwrap_or("").to_owned(), room)
        })
        .collect()
}

async fn the_capture_gives_rooms_participants_tracks_stats_and_webhooks(grouping: bool) {
    let receiver = TestReceiver::start().await;
    let app =
        TestApp::start_with(&endpoint_config(&receiver.url("/hook"), "livekit", "s3cret")).await;
    let events = capture_now();
    let (accepted, ignored, rejected) = send(&app, &events, grouping).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(accepted + ignored, 641);
    // Transport requests and repeated ICE states, mostly.
    assert!(ignored > 350, "{ignored} ignored");

    let room = room_by_name(&app, "1234").await;
    assert!(room["room"]["endedAt"].is_string(), "{room}");
    let participants = room["participants"].as_array().expect("participants");
    let mut identities: Vec<&str> =
        participants.iter().map(|p| p["identity"].as_str().expect("identity")).collect();
    identities.sort_unstable();
    assert_eq!(identities, ["probe0", "probe1"]);
    for participant in participants {
        assert_eq!(participant["state"], "left", "{participant}");
        let time = |field: &str| participant[field].as_str().expect(field).to_owned();
        let (joined, active, left) = (time("joinedAt"), time("activeAt"), time("leftAt"));
        assert!(joined <= active && active <= left, "{participant}");
    }
    let tracks = room["tracks"].as_array().expect("tracks");
    let mut mimes: Vec<&str> =
        tracks.iter().map(|t| t["mimeType"].as_str().expect("mime")).collect();
    mimes.sort_unstable();
    assert_eq!(mimes, ["audio/opus", "audio/opus", "video/VP8", "video/VP8"]);
    assert!(tracks.iter().all(|track| track["unpublishedAt"].is_string()), "{room}");
    let echotest = room_by_name(&app, "echotest-499838862650198").await;
    assert_eq!(echotest["participants"][0]["identity"], "echotest-hEMM9HBECXpH");
    assert_eq!(echotest["participants"][0]["state"], "left");

    app.flush().await;
    let sid = room["room"]["sid"].as_str().expect("sid");
    let stats = app.get_ok(&format!("/v1/stats?roomSid={sid}")).await;
    let series = stats["series"].as_array().expect("series");
    let probe0 = participants.iter().find(|p| p["identity"] == "probe0").expect("probe0");
    let probe0_video = tracks
        .iter()
        .find(|t| t["participantSid"] == probe0["sid"] && t["mimeType"] == "video/VP8")
        .expect("probe0's video");
    let bytes_of = |track: &Value, direction: &str| -> (u64, usize) {
        let matching: Vec<&Value> = series
            .iter()
            .filter(|s| s["trackSid"] == track["sid"] && s["direction"] == direction)
            .collect();
        let bytes = matching
            .iter()
            .flat_map(|s| s["windows"].as_array().expect("windows"))
            .map(|w| w["bytes"].as_u64().expect("bytes"))
            .sum();
        (bytes, matching.len())
    };
    // Every byte Janus counted on probe0's video, upstream; downstream to probe1 alone.
    assert_eq!(bytes_of(probe0_video, "upstream"), (PROBE0_VIDEO_BYTES, 1));
    let (downstream, subscribers) = bytes_of(probe0_video, "downstream");
    assert_eq!(subscribers, 1);
    assert!(downstream > PROBE0_VIDEO_BYTES * 8 / 10, "{downstream}");
    for s in series {
        for window in s["windows"].as_array().expect("windows") {
            assert!(window["avgBps"].as_f64().expect("avgBps") > 0.0, "{window}");
        }
    }

    let received = receiver
        .wait_for(Duration::from_secs(20), |received| {
            webhook_events(received).iter().filter(|(event, _)| event == "room_finished").count()
                == 2
        })
        .await;
    let webhooks = webhook_events(&received);
    for expected in [
        "room_started",
        "participant_joined",
        "track_published",
        "track_unpublished",
        "participant_left",
        "room_finished",
    ] {
        for room in ["1234", "echotest-499838862650198"] {
            assert!(
                webhooks.iter().any(|(event, name)| event == expected && name == room),
                "no {expected} for {room}: {webhooks:?}"
            );
        }
    }
    assert_eq!(webhooks.iter().filter(|(event, _)| event == "participant_joined").count(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_one_event_a_request_gives_rooms_participants_tracks_stats_and_webhooks() {
    the_capture_gives_rooms_participants_tracks_stats_and_webhooks(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_grouped_and_gzipped_gives_rooms_participants_tracks_stats_and_webhooks() {
    the_capture_gives_rooms_participants_tracks_stats_and_webhooks(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_janus_call_keeps_its_room_participants_and_tracks() {
    let events = capture_now();
    // Mid-call: both VideoRoom participants published and up (the capture's 400th event).
    let (before, after) = events.split_at(400);
    let app = TestApp::start().await;
    let (_, _, rejected) = send(&app, before, true).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let during = room_by_name(&app, "1234").await;
    assert_eq!(during["participants"].as_array().expect("participants").len(), 2);
    let data = app.stop().await;

    let app = TestApp::start_in(data, "").await;
    let (_, _, rejected) = send(&app, after, true).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let room = room_by_name(&app, "1234").await;
    // The same room, the same two participants, now left; the same four tracks, unpublished.
    assert_eq!(room["room"]["sid"], during["room"]["sid"]);
    assert!(room["room"]["endedAt"].is_string(), "{room}");
    let participants = room["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 2, "{room}");
    assert!(participants.iter().all(|p| p["state"] == "left"), "{room}");
    assert_eq!(room["tracks"].as_array().expect("tracks").len(), 4, "{room}");
    assert!(
        room["tracks"].as_array().expect("tracks").iter().all(|t| t["unpublishedAt"].is_string())
    );

    // Stats after the restart are attributed to the call: probe0's video, upstream, lost at
    // most one stats period (2 s of about 15 kB/s) of what Janus counted.
    app.flush().await;
    let sid = room["room"]["sid"].as_str().expect("sid");
    let probe0 = participants.iter().find(|p| p["identity"] == "probe0").expect("probe0");
    let video = room["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .find(|t| t["participantSid"] == probe0["sid"] && t["mimeType"] == "video/VP8")
        .expect("probe0's video")
        .clone();
    let stats = app
        .get_ok(&format!(
            "/v1/stats?roomSid={sid}&trackSid={}&direction=upstream",
            video["sid"].as_str().expect("sid")
        ))
        .await;
    let bytes: u64 = stats["series"]
        .as_array()
        .expect("series")
        .iter()
        .flat_map(|s| s["windows"].as_array().expect("windows"))
        .map(|w| w["bytes"].as_u64().expect("bytes"))
        .sum();
    assert!((PROBE0_VIDEO_BYTES - 40_000..=PROBE0_VIDEO_BYTES).contains(&bytes), "{bytes}");
    app.stop().await;
}

/// A Janus server restarted (`core.started` ends its calls, and its adapter, left empty, is
/// forgotten), its new call under way, then a restart of the service: the new call's state,
/// written by a new adapter, must win over the forgotten adapter's last one in the store. (Its
/// generations counted from 0 again, so the store kept the older, empty state, and the restarted
/// service lost the call: its participants never left.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_a_janus_restart_is_kept_across_a_restart_of_the_service() {
    let second = capture_now();
    let first_at = |events: &[Value]| events[0]["timestamp"].as_u64().expect("a timestamp");
    let last_at = |events: &[Value]| events.last().expect("events")["timestamp"].as_u64();
    // The same call an hour earlier, until its middle, then Janus restarts.
    let span = last_at(&second).expect("a timestamp") - first_at(&second);
    let mut first: Vec<Value> = second[..400].to_vec();
    for event in &mut first {
        let at = event["timestamp"].as_u64().expect("a timestamp");
        event["timestamp"] = json!(at - span - 60_000_000);
    }
    let janus_restart = json!({"type": 256, "subtype": 1, "emitter": first[0]["emitter"],
        "timestamp": last_at(&first).expect("a timestamp") + 1, "event": {"status": "started"}});
    first.push(janus_restart);
    let app = TestApp::start().await;
    let (_, _, rejected) = send(&app, &first, true).await;
    assert!(rejected.is_empty(), "{rejected:?}");

    let (before, after) = second.split_at(400);
    let (_, _, rejected) = send(&app, before, true).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let rooms = app.get_ok("/v1/rooms?limit=100").await;
    let open: Vec<&Value> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter(|room| room["name"] == "1234" && room["endedAt"].is_null())
        .collect();
    assert_eq!(open.len(), 1, "the first call's room ended, the second's is open: {rooms}");
    let sid = open[0]["sid"].as_str().expect("a sid").to_owned();
    let data = app.stop().await;

    let app = TestApp::start_in(data, "").await;
    let (_, _, rejected) = send(&app, after, true).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let room = app.get_ok(&format!("/v1/rooms/{sid}")).await;
    assert!(room["room"]["endedAt"].is_string(), "the call ends after the restart: {room}");
    let participants = room["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 2, "{room}");
    assert!(participants.iter().all(|p| p["state"] == "left"), "{room}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_with_a_clear_error_and_basic_or_bearer_work() {
    let app = TestApp::start().await;
    let event = json!({"emitter": "janus-1", "type": 128, "timestamp": now_micros(),
        "event": {"transport": "janus.transport.http"}});
    let body = serde_json::to_vec(&event).expect("JSON");
    let bearer = format!("Bearer {}", TestApp::token(INGESTER));
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "missing `Authorization` header"),
        (Some(basic((INGESTER.0, "wrong"))), 401, "wrong secret for API key `ingest-key`"),
        (Some(basic(("nobody", "x"))), 401, "unknown API key `nobody`"),
        (Some("Basic !!!".to_owned()), 401, "not base64"),
        (
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("no-colon"))),
            401,
            "`<API key>:<secret>`",
        ),
        (Some("Bearer not-a-token".to_owned()), 401, "not a valid JWT"),
        (Some(basic(READER)), 403, "does not have the `ingest` role"),
        (Some(basic(INGESTER)), 200, ""),
        (Some(basic(ADMIN)), 200, ""),
        (Some(bearer), 200, ""),
    ];
    for (authorization, status, message) in cases {
        let (got, answer) =
            post_raw(&app, authorization.as_deref(), "application/json", body.clone(), false).await;
        assert_eq!(got, status, "{authorization:?}: {answer}");
        if status == 200 {
            assert_eq!(
                answer,
                json!({"accepted": 0, "ignored": 1, "rejected": [], "rejectedCount": 0})
            );
        } else {
            let error =
                answer["error"]["message"].as_str().unwrap_or(&answer.to_string()).to_owned();
            assert!(answer.to_string().contains(message), "{authorization:?}: {error}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_rejected_alone_naming_the_field_and_nothing_accepted_is_lost() {
    let app = TestApp::start_with(
        "[http]\nmax_body_bytes = 16777216\nmax_decompressed_bytes = 16777216\n",
    )
    .await;
    let now = now_micros() - 5_000_000;
    let joined = |session: u64, display: &str| {
        json!({"emitter": "janus-1", "type": 64, "timestamp": now, "session_id": session,
            "handle_id": session + 1, "event": {"plugin": "janus.plugin.videoroom",
            "data": {"event": "joined", "room": 77, "id": session + 2, "display": display}}})
    };
    let mut deep = json!({"leaf": true});
    for _ in 0..99 {
        deep = json!({ "nested": deep });
    }
    let batch = json!([
        joined(1, "alice"),
        {"emitter": "janus-1", "type": "plugin", "timestamp": now},
        42,
        {"type": 1, "timestamp": now, "session_id": 5, "event": {"name": "created"}},
        {"emitter": "janus-1", "type": 512, "timestamp": now, "event": {}},
        {"emitter": "janus-1", "type": 16, "subtype": 9, "timestamp": now, "session_id": 1, "handle_id": 2, "event": {}},
        {"emitter": "janus-1", "type": 2, "timestamp": now, "session_id": 9, "handle_id": 10,
            "event": {"name": "attached", "plugin": "videoroom"}},
        {"emitter": "janus-1", "type": 2, "timestamp": now, "session_id": 9, "handle_id": 10,
            "event": {"name": "attached", "plugin": "janus.plugin.someoneelses"}},
        {"emitter": "janus-1", "type": 64, "timestamp": now, "event": {"plugin": "janus.plugin.someoneelses", "data": deep}},
        {"emitter": "janus-1", "type": 4, "timestamp": now, "event": {"schema": "x", "data": deep}},
        {"emitter": "janus-1", "type": 1, "timestamp": now + 3_600_000_000_u64, "session_id": 5, "event": {"name": "created"}},
        joined(11, &"x".repeat(300)),
        {"emitter": "janus-1", "type": 1, "timestamp": now, "session_id": -4, "event": {"name": "created"}},
        joined(21, "bob"),
    ]);
    let (status, answer) = post(&app, &batch).await;
    assert_eq!(status, 200, "{answer}");
    let expected: [(u64, &str); 9] = [
        (1, "type: expected an unsigned integer, found a string"),
        (2, "(event): expected a JSON object, found a number"),
        (3, "emitter: required"),
        (4, "type: unknown event type 512"),
        (5, "subtype: unknown subtype 9 of type 16"),
        (6, "event.plugin: `videoroom` is not a Janus plugin's name"),
        (10, "timestamp: "),
        (11, "event.data.display: 300 bytes, more than the 256 allowed (`limits.max_id_bytes`)"),
        (12, "session_id: -4 is not an unsigned 64-bit integer"),
    ];
    let rejected = answer["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), expected.len(), "{answer}");
    for ((index, message), rejection) in expected.iter().zip(rejected) {
        assert_eq!(rejection["index"], *index, "{answer}");
        let error = rejection["error"].as_str().expect("error");
        assert!(error.starts_with(message), "{index}: `{error}` does not start with `{message}`");
    }
    // alice, bob and the unknown plugin's handle (a room of its own); the deep events carry
    // nothing for telemetry.
    assert_eq!(
        (answer["accepted"].as_u64(), answer["ignored"].as_u64()),
        (Some(3), Some(2)),
        "{answer}"
    );
    let room = room_by_name(&app, "77").await;
    let before = room["participants"].as_array().expect("participants").len();
    assert_eq!(before, 2, "{room}");
    room_by_name(&app, "someoneelses-10").await;

    // Bodies refused whole: nothing of them takes effect.
    let mut huge = vec![joined(31, "carol")];
    huge.extend((0..99_999).map(|_| json!({"emitter": "j", "type": 128, "timestamp": now})));
    let huge = serde_json::to_vec(&Value::Array(huge)).expect("JSON");
    let mut too_deep = String::new();
    for _ in 0..200 {
        too_deep.push_str("{\"a\":");
    }
    too_deep.push('1');
    too_deep.push_str(&"}".repeat(200));
    let too_deep_in_array =
        format!("[{}, {too_deep}]", serde_json::to_string(&joined(41, "dave")).expect("JSON"));
    let bomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        ("an array of 100,000 events", huge, false, 413, "100000 events, more than the 10000"),
        ("nesting beyond 128", too_deep.into_bytes(), false, 400, "recursion limit"),
        ("not JSON", b"emitter=janus".to_vec(), false, 400, "expected a Janus event"),
        ("broken JSON", b"[{\"emitter\": ".to_vec(), false, 400, "not valid JSON"),
        ("not gzip", b"{}".to_vec(), true, 400, "invalid gzip"),
    ];
    for (name, body, encoded, status, message) in cases {
        let mut request = app
            .client
            .post(app.url("/v1/ingest/janus"))
            .header("authorization", basic(INGESTER))
            .header("content-type", "application/json");
        if encoded {
            request = request.header("content-encoding", "gzip");
        }
        let response = request.body(body).send().await.expect("request");
        let got = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(message), "{name}: {text}");
    }
    let response = app
        .client
        .post(app.url("/v1/ingest/janus"))
        .header("authorization", basic(INGESTER))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 413);
    let (status, answer) =
        post_raw(&app, Some(&basic(INGESTER)), "application/x-protobuf", b"{}".to_vec(), false)
            .await;
    assert_eq!(status, 415, "{answer}");
    assert!(answer.to_string().contains("application/json"), "{answer}");

    // What was accepted before is intact; nothing of the refused bodies arrived.
    let room = room_by_name(&app, "77").await;
    let identities: Vec<&str> = room["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["identity"].as_str().expect("identity"))
        .collect();
    assert_eq!(identities.len(), 2, "{room}");
    assert!(identities.contains(&"alice") && identities.contains(&"bob"), "{room}");
    // Nesting beyond 128 in one event of an array: that event alone is rejected.
    let (status, answer) = post_raw(
        &app,
        Some(&basic(INGESTER)),
        "application/json",
        too_deep_in_array.into_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    assert!(
        answer["rejected"][0]["error"].as_str().expect("error").contains("recursion limit"),
        "{answer}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("rtc_telemetry_janus_events_total{outcome=\"rejected\"} 10"),
        "{metrics}"
    );
    assert!(metrics.contains("rtc_telemetry_janus_state{kind=\"rooms\"} 2"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_on_janus_state_refuse_new_servers_and_sessions_by_name() {
    let app = TestApp::start_with("[janus]\nmax_emitters = 2\nmax_sessions = 1\n").await;
    let now = now_micros() - 1_000_000;
    let created = |emitter: &str, session: u64| {
        json!({"emitter": emitter, "type": 1, "timestamp": now, "session_id": session,
            "event": {"name": "created"}})
    };
    let (status, answer) = post(
        &app,
        &json!([
            created("janus-1", 1),
            created("janus-1", 2),
            created("janus-2", 1),
            created("janus-3", 1)
        ]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["accepted"], 2, "{answer}");
    let errors: Vec<&str> = answer["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["error"].as_str().expect("error"))
        .collect();
    assert!(
        errors[0].starts_with("session_id: ") && errors[0].contains("`janus.max_sessions` (1)"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("emitter: ") && errors[1].contains("`janus.max_emitters` (2)"),
        "{errors:?}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("rtc_telemetry_janus_limit_refusals_total{limit=\"sessions\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rtc_telemetry_janus_limit_refusals_total{limit=\"emitters\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_janus_server_beyond_the_node_limit_is_refused_and_leaves_no_state() {
    let app = TestApp::start_with("[limits]\nmax_nodes = 1\n").await;
    let now = now_micros() - 1_000_000;
    let created = |emitter: &str| {
        json!({"emitter": emitter, "type": 1, "timestamp": now, "session_id": 1,
            "event": {"name": "created"}})
    };
    let (status, answer) = post(&app, &json!([created("janus-a"), created("janus-b")])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    let error = answer["rejected"][0]["error"].as_str().expect("error");
    assert!(error.starts_with("emitter: ") && error.contains("limits.max_nodes"), "{error}");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("rtc_telemetry_janus_state{kind=\"emitters\"} 1"), "{metrics}");
    app.stop().await;
}
