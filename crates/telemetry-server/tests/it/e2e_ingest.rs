//! A full room lifecycle sent as JSON, as protobuf and over gRPC yields the expected events,
//! rooms, participants, tracks and stats windows in the query API.

use serde_json::Value;
use telemetry_proto::v1;

use crate::support::{ALICE, BOB, CAROL, Lifecycle, ROOM, TestApp, VIDEO};

async fn check_lifecycle_was_stored(app: &TestApp) {
    app.flush().await;
    let detail = app.get_ok(&format!("/v1/rooms/{ROOM}")).await;
    assert_eq!(detail["room"]["name"], "lifecycle");
    assert!(detail["room"]["endedAt"].is_string());
    assert_eq!(detail["room"]["numParticipants"], 3);
    assert_eq!(detail["room"]["numTracks"], 1);
    let states: Vec<(String, String)> = detail["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["sid"].as_str().unwrap_or("").to_owned(),
                p["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (ALICE.to_owned(), "left".to_owned()),
            (BOB.to_owned(), "left".to_owned()),
            (CAROL.to_owned(), "aborted".to_owned())
        ]
    );
    let track = &detail["tracks"][0];
    assert_eq!(
        (track["sid"].as_str(), track["type"].as_str(), track["source"].as_str()),
        (Some(VIDEO), Some("VIDEO"), Some("CAMERA"))
    );
    assert!(track["publishedAt"].is_string() && track["unpublishedAt"].is_string());

    let events = app.get_ok(&format!("/v1/rooms/{ROOM}/events?limit=100")).await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "ROOM_CREATED",
            "PARTICIPANT_JOINED",
            "PARTICIPANT_ACTIVE",
            "PARTICIPANT_JOINED",
            "PARTICIPANT_ACTIVE",
            "PARTICIPANT_JOINED",
            "TRACK_PUBLISHED",
            "TRACK_SUBSCRIBED",
            "PARTICIPANT_CONNECTION_ABORTED",
            "TRACK_UNPUBLISHED",
            "PARTICIPANT_LEFT",
            "PARTICIPANT_LEFT",
            "ROOM_ENDED",
        ]
    );
    let first = &events["events"][0];
    assert!(first["id"].as_str().is_some_and(|id| id.starts_with("AE_")));
    assert_eq!(first["nodeId"], "sfu-test-1");

    let stats = app.get_ok(&format!("/v1/stats?roomSid={ROOM}&from=0")).await;
    let series = stats["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{stats}");
    let find = |participant: &str, direction: &str| -> &Value {
        series
            .iter()
            .find(|s| s["participantSid"] == participant && s["direction"] == direction)
            .unwrap_or_else(|| panic!("no {participant} {direction} series in {stats}"))
    };
    let upstream = find(ALICE, "upstream");
    assert_eq!(
        (upstream["trackSid"].as_str(), upstream["kind"].as_str(), upstream["mime"].as_str()),
        (Some(VIDEO), Some("media"), Some("video/VP8"))
    );
    let window = &upstream["windows"][0];
    assert_eq!(window["bytes"], 6 * 625_000);
    assert_eq!(window["samples"], 6);
    assert_eq!(window["packetsLost"], 12);
    assert_eq!(window["coveredMs"], 30_000);
    assert_eq!(window["resolutionMs"], 5000);
    assert!((window["avgBps"].as_f64().expect("avg") - 1_000_000.0).abs() < 1e-6);
    assert!((window["peakBps"].as_f64().expect("peak") - 1_000_000.0).abs() < 1e-6);
    assert_eq!(window["rttMax"], 40);
    let downstream = find(BOB, "downstream");
    assert_eq!(downstream["windows"][0]["bytes"], 6 * 600_000);

    let nodes = app.get_ok("/v1/nodes").await;
    assert_eq!(nodes["nodes"][0]["nodeId"], "sfu-test-1");
    let rates = app.get_ok("/v1/nodes/sfu-test-1/rates?window=5s").await;
    let points = rates["points"].as_array().expect("points");
    let total_in: f64 = points.iter().map(|p| p["bpsIn"].as_f64().unwrap_or(0.0) * 5.0 / 8.0).sum();
    assert!(
        (total_in - 6.0 * 625_000.0).abs() < 1.0,
        "every upstream byte is in the node rates: {total_in}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lifecycle_sent_as_json_is_queryable() {
    let app = TestApp::start().await;
    let batch = v1::TelemetryBatch { calls: Lifecycle::new().calls() };
    let (status, response) = app.ingest_json(&serde_json::to_value(&batch).expect("json")).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["accepted"], batch.calls.len());
    assert_eq!(response["rejected"], serde_json::json!([]));
    check_lifecycle_was_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lifecycle_sent_as_protobuf_is_queryable() {
    let app = TestApp::start().await;
    let batch = v1::TelemetryBatch { calls: Lifecycle::new().calls() };
    let (status, response) = app.ingest_protobuf(&batch).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["accepted"], batch.calls.len());
    check_lifecycle_was_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lifecycle_sent_over_grpc_is_queryable() {
    let app = TestApp::start().await;
    let calls = Lifecycle::new().calls();
    // Three batches on one stream, in order.
    let batches: Vec<v1::TelemetryBatch> =
        calls.chunks(8).map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() }).collect();
    let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let mut request = tonic::Request::new(tokio_stream::iter(batches));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", TestApp::token(crate::support::INGESTER)).parse().expect("metadata"),
    );
    let summary = client.ingest(request).await.expect("ingest").into_inner();
    assert_eq!(summary.accepted as usize, calls.len());
    assert!(summary.rejected.is_empty());
    check_lifecycle_was_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_rejections_carry_their_index_in_the_stream() {
    let app = TestApp::start().await;
    let mut calls = Lifecycle::new().calls();
    calls[3].call = None;
    let batches = vec![
        v1::TelemetryBatch { calls: calls[..2].to_vec() },
        v1::TelemetryBatch { calls: calls[2..].to_vec() },
    ];
    let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let mut request = tonic::Request::new(tokio_stream::iter(batches));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", TestApp::token(crate::support::ADMIN)).parse().expect("metadata"),
    );
    let summary = client.ingest(request).await.expect("ingest").into_inner();
    assert_eq!(summary.accepted as usize, calls.len() - 1);
    assert_eq!(summary.rejected.len(), 1);
    assert_eq!(summary.rejected[0].index, 3);
    assert!(
        summary.rejected[0].error.contains("no member of `call`"),
        "{}",
        summary.rejected[0].error
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted() {
    use std::io::Write as _;
    let app = TestApp::start().await;
    let batch = v1::TelemetryBatch { calls: Lifecycle::new().calls() };
    let json = serde_json::to_vec(&batch).expect("json");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json).expect("gzip");
    let body = encoder.finish().expect("gzip");
    let response = app
        .client
        .post(app.url("/v1/telemetry"))
        .bearer_auth(TestApp::token(crate::support::ADMIN))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["accepted"], batch.calls.len());
    check_lifecycle_was_stored(&app).await;
    app.stop().await;
}
