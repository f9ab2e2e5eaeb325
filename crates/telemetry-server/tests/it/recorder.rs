//! LiveKit's `livekit.AnalyticsRecorderService`: analytics a LiveKit node already coalesced,
//! streamed in, stored as they are, and read back through the query API.
//!
//! The conformance test builds the messages with LiveKit's own Python protobufs (PyPI
//! `livekit-protocol`) and sends them with `grpcio` (`tools/conformance/send_recorder.py`); it
//! runs when `TELEMETRY_TEST_CONFORMANCE=1` (as `cargo xtask test` sets it) and is skipped
//! otherwise. The other test sends the same kind of messages with the Rust client.

use std::process::Command;

use serde_json::Value;
use telemetry_core::proto as lk;
use telemetry_proto::recorder::analytics_recorder_service_client::AnalyticsRecorderServiceClient;

use crate::receivers::tools;
use crate::support::{INGESTER, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_python_analytics_are_stored_and_queryable() {
    let Some(tools) = tools() else { return };
    let (python, dir) = (tools.python, tools.dir);
    let app = TestApp::start().await;
    let target = app.grpc.to_string();
    let token = TestApp::token(INGESTER);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(dir.join("send_recorder.py")).arg(target).arg(token).output()
    })
    .await
    .expect("join")
    .expect("run send_recorder.py");
    assert!(
        output.status.success(),
        "send_recorder.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(sent["unauthenticated_refused"], true, "a bad token is refused");
    let room = sent["room"].as_str().expect("room");

    let detail = app.get_ok(&format!("/v1/rooms/{room}")).await;
    assert_eq!(detail["room"]["name"], "recorded-room");
    assert_eq!(detail["participants"][0]["identity"], "alice");
    assert_eq!(detail["participants"][0]["state"], "active");
    let events = app.get_ok(&format!("/v1/rooms/{room}/events")).await;
    let ids: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or(""))
        .collect();
    let expected: Vec<&str> = sent["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e.as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, expected, "stored as sent, in order");
    assert_eq!(events["events"][2]["clientMeta"]["clientConnectTime"], 420);

    let stats = app.get_ok(&format!("/v1/stats?roomSid={room}&from=0")).await;
    let windows = stats["series"][0]["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 3);
    for window in windows {
        assert_eq!(window["bytes"], 625_000);
        assert_eq!(window["coveredMs"], 30_000);
        assert!((window["avgBps"].as_f64().expect("avg") - 625_000.0 * 8.0 / 30.0).abs() < 1e-6);
    }
    assert_eq!(stats["series"][0]["direction"], "upstream");
    let nodes = app.get_ok("/v1/nodes").await;
    let node = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["nodeId"] == "lk-node-1")
        .expect("lk-node-1");
    assert_eq!(node["rooms"]["sequenceNumber"], "7");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_streams_from_a_rust_client_are_stored() {
    let app = TestApp::start().await;
    let mut client = AnalyticsRecorderServiceClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let authorize = |message| {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", TestApp::token(INGESTER)).parse().expect("metadata"),
        );
        request
    };
    let event = lk::AnalyticsEvent {
        id: "AE_rust00000001".into(),
        r#type: lk::AnalyticsEventType::RoomCreated as i32,
        room: Some(lk::Room {
            sid: "RM_rust0000001".into(),
            name: "rust".into(),
            ..Default::default()
        }),
        // Recent: a time older than `store.retention` is dropped.
        timestamp: Some(telemetry_core::Clock::now(&telemetry_core::SystemClock).to_timestamp()),
        ..Default::default()
    };
    client
        .ingest_events(authorize(tokio_stream::iter(vec![lk::AnalyticsEvents {
            events: vec![event.clone(), event],
        }])))
        .await
        .expect("events");
    let detail = app.get_ok("/v1/rooms/RM_rust0000001").await;
    assert_eq!(detail["room"]["name"], "rust");
    let events = app.get_ok("/v1/rooms/RM_rust0000001/events").await;
    assert_eq!(
        events["events"].as_array().expect("events").len(),
        1,
        "an event sent twice is stored once"
    );
    app.stop().await;
}

/// A recorder item that fails validation is dropped alone and counted; the rest of its message
/// and of the stream is stored, and the stream ends OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_recorder_items_are_dropped_alone_and_counted() {
    let app = TestApp::start().await;
    let mut client = AnalyticsRecorderServiceClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    fn authorize<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", TestApp::token(INGESTER)).parse().expect("metadata"),
        );
        request
    }
    let now = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    let event = |id: &str, sid: &str| lk::AnalyticsEvent {
        id: id.into(),
        r#type: lk::AnalyticsEventType::RoomCreated as i32,
        room: Some(lk::Room { sid: sid.into(), name: "checked".into(), ..Default::default() }),
        timestamp: Some(now.to_timestamp()),
        ..Default::default()
    };
    let nan_rtp = lk::AnalyticsEvent {
        rtp_stats: Some(lk::RtpStats { bitrate: f64::NAN, ..Default::default() }),
        ..event("AE_checked00002", "RM_checked0002")
    };
    let bad_time = lk::AnalyticsEvent {
        timestamp: Some(pbjson_types::Timestamp { seconds: 1, nanos: -5 }),
        ..event("AE_checked00003", "RM_checked0003")
    };
    let long_sid = event("AE_checked00004", &"R".repeat(257));
    client
        .ingest_events(authorize(tokio_stream::iter(vec![
            lk::AnalyticsEvents {
                events: vec![event("AE_checked00001", "RM_checked0001"), nan_rtp, bad_time],
            },
            lk::AnalyticsEvents {
                events: vec![long_sid, event("AE_checked00005", "RM_checked0005")],
            },
        ])))
        .await
        .expect("the stream ends OK");
    for (sid, status) in [
        ("RM_checked0001", 200),
        ("RM_checked0002", 404),
        ("RM_checked0003", 404),
        ("RM_checked0005", 200),
    ] {
        assert_eq!(app.get(&format!("/v1/rooms/{sid}")).await.0, status, "{sid}");
    }

    let stat = |id: &str, score: f32| lk::AnalyticsStat {
        id: id.into(),
        room_id: "RM_checked0001".into(),
        participant_id: "PA_checked0001".into(),
        track_id: "TR_checked0001".into(),
        kind: lk::StreamType::Upstream as i32,
        score,
        time_stamp: Some(now.to_timestamp()),
        streams: vec![lk::AnalyticsStream {
            primary_bytes: 1000,
            start_time: Some(now.plus_millis(-30_000).to_timestamp()),
            end_time: Some(now.to_timestamp()),
            ..Default::default()
        }],
        ..Default::default()
    };
    client
        .ingest_stats(authorize(tokio_stream::iter(vec![lk::AnalyticsStats {
            stats: vec![stat("AS_checked0001", 4.5), stat("AS_checked0002", f32::INFINITY)],
        }])))
        .await
        .expect("the stream ends OK");
    let stats = app.get_ok("/v1/stats?roomSid=RM_checked0001&from=0").await;
    let windows = stats["series"][0]["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 1, "the bad stat is dropped: {stats}");
    assert_eq!(windows[0]["score"], 4.5);

    client
        .ingest_node_room_states(authorize(tokio_stream::iter(vec![
            lk::AnalyticsNodeRooms {
                node_id: "N".repeat(300),
                timestamp: Some(now.to_timestamp()),
                ..Default::default()
            },
            lk::AnalyticsNodeRooms {
                node_id: "lk-node-checked".into(),
                sequence_number: 3,
                timestamp: Some(now.to_timestamp()),
                ..Default::default()
            },
        ])))
        .await
        .expect("the stream ends OK");
    let nodes = app.get_ok("/v1/nodes").await;
    let ids: Vec<&str> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|node| node["nodeId"].as_str())
        .collect();
    assert!(ids.contains(&"lk-node-checked"), "{nodes}");
    assert!(!ids.iter().any(|id| id.starts_with("NNN")), "the long node id is dropped: {nodes}");

    let metrics = app.metrics_text().await;
    for (stream, dropped) in [("events", 3), ("stats", 1), ("node_room_states", 1)] {
        let line = format!("rtc_telemetry_recorder_dropped_total{{stream=\"{stream}\"}} {dropped}");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    app.stop().await;
}
