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
        timestamp: Some(pbjson_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
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
