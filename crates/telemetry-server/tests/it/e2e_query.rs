//! The query API: pagination, filters, bad parameters, unknown resources, health and metrics.

use serde_json::{Value, json};
use telemetry_proto::v1;

use crate::support::{Lifecycle, ROOM, TestApp};

fn room_started(sid: &str, name: &str, at_secs: i64) -> Value {
    json!({ "at": format!("{}", humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at_secs as u64))),
            "roomStarted": { "room": { "sid": sid, "name": name, "creationTime": at_secs.to_string() } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_page_with_a_cursor_and_filter_by_state_and_name() {
    let app = TestApp::start().await;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
            as i64;
    let calls: Vec<Value> = (0..5)
        .map(|i| room_started(&format!("RM_page{i:07}"), &format!("page-{i}"), now - 100 + i))
        .collect();
    let (status, _) = app.ingest_json(&json!({ "calls": calls })).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .ingest_json(&json!({ "calls": [{ "roomEnded": { "room": { "sid": "RM_page0000001", "name": "page-1" } } }] }))
        .await;
    assert_eq!(status, 200);

    let first = app.get_ok("/v1/rooms?limit=2").await;
    let sids = |page: &Value| {
        page["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["sid"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(sids(&first), ["RM_page0000004", "RM_page0000003"]);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = app.get_ok(&format!("/v1/rooms?limit=2&cursor={cursor}")).await;
    assert_eq!(sids(&second), ["RM_page0000002", "RM_page0000001"]);
    let third = app
        .get_ok(&format!(
            "/v1/rooms?limit=2&cursor={}",
            second["nextCursor"].as_str().expect("next")
        ))
        .await;
    assert_eq!(sids(&third), ["RM_page0000000"]);
    assert!(third["nextCursor"].is_null());

    assert_eq!(sids(&app.get_ok("/v1/rooms?active=false").await), ["RM_page0000001"]);
    assert_eq!(
        app.get_ok("/v1/rooms?active=true").await["rooms"].as_array().expect("rooms").len(),
        4
    );
    assert_eq!(sids(&app.get_ok("/v1/rooms?name=ge-3").await), ["RM_page0000003"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_page_and_filter_by_type() {
    let app = TestApp::start().await;
    let batch = v1::TelemetryBatch { calls: Lifecycle::new().calls() };
    let (status, _) = app.ingest_protobuf(&batch).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    let mut path = format!("/v1/rooms/{ROOM}/events?limit=4");
    loop {
        let page = app.get_ok(&path).await;
        seen.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_str().unwrap_or("").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/rooms/{ROOM}/events?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 13);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 13, "no event twice across pages");
    let joined = app.get_ok(&format!("/v1/rooms/{ROOM}/events?type=PARTICIPANT_JOINED")).await;
    assert_eq!(joined["events"].as_array().expect("events").len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_400_naming_the_parameter_and_unknown_things_404() {
    let app = TestApp::start().await;
    let cases = [
        ("/v1/rooms?limit=0", "`limit`"),
        ("/v1/rooms?limit=100000", "`limit`"),
        ("/v1/rooms?limit=many", "limit"),
        ("/v1/rooms?active=maybe", "active"),
        ("/v1/rooms?cursor=not-a-cursor", "`cursor`"),
        ("/v1/rooms?colour=blue", "colour"),
        (&format!("/v1/rooms/{ROOM}/events?type=ROOM_EXPLODED"), "`type`"),
        (&format!("/v1/rooms/{ROOM}/events?cursor=%%%"), "cursor"),
        ("/v1/stats?direction=sideways", "`direction`"),
        ("/v1/stats?from=yesterday", "`from`"),
        ("/v1/stats?from=2000&to=1000", "`from`"),
        ("/v1/nodes/n1/rates?window=500ms", "`window`"),
        ("/v1/nodes/n1/rates?window=1.5s", "`window`"),
        ("/v1/nodes/n1/rates?window=1s&from=0", "`window`"),
        ("/v1/nodes/n1/rates?window=soon", "`window`"),
    ];
    for (path, expected) in cases {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(expected), "{path}: {message:?} should name {expected}");
        assert_eq!(body["error"]["code"], "invalid_argument");
    }
    let (status, body) = app.get("/v1/rooms/RM_nonexistent").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let app = TestApp::start().await;
    let batch = v1::TelemetryBatch { calls: Lifecycle::new().calls() };
    let (status, _) = app.ingest_protobuf(&batch).await;
    assert_eq!(status, 200);
    let health = app.client.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics");
    assert!(metrics.headers()["content-type"].to_str().unwrap_or("").starts_with("text/plain"));
    let text = metrics.text().await.expect("text");
    for line in [
        "# TYPE livekit_packet_total counter",
        "# TYPE livekit_rtt_ms histogram",
        "# TYPE livekit_room_total gauge",
        "livekit_room_total{node_id=\"sfu-test-1\",node_type=\"SERVER\"} 0",
        "livekit_participant_join_total{node_id=\"sfu-test-1\",node_type=\"SERVER\",state=\"rtc_active\",warp=\"\"} 2",
        "rtc_telemetry_ingest_calls_total{transport=\"http\",result=\"accepted\"} 25",
        "# TYPE rtc_telemetry_store_write_seconds histogram",
        "rtc_telemetry_core_outputs_pushed_total",
        "rtc_telemetry_stats_samples_total{outcome=\"recorded\"} 12",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Every family rendered (the core's, the service's, the webhook dispatcher's) is named in
    // the one list of metric names, and each of its names is rendered.
    let rendered: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    for name in &rendered {
        assert!(
            telemetry_core::metrics::names::ALL.contains(name),
            "`{name}` is not in `telemetry_core::metrics::names::ALL`"
        );
    }
    // Cluster mode's families are rendered only with the cluster on (checked in `cluster.rs`).
    let cluster_only = [
        telemetry_core::metrics::names::CLUSTER_PARTITIONS_OWNED,
        telemetry_core::metrics::names::CLUSTER_LEASE_EVENTS_TOTAL,
        telemetry_core::metrics::names::CLUSTER_PUBLISHED_MESSAGES_TOTAL,
        telemetry_core::metrics::names::CLUSTER_CONSUMED_MESSAGES_TOTAL,
        telemetry_core::metrics::names::CLUSTER_REFUSED_CALLS_TOTAL,
        telemetry_core::metrics::names::CLUSTER_CONSUMER_LAG,
        telemetry_core::metrics::names::CLUSTER_CONSUMER_REDELIVERED,
    ];
    for name in telemetry_core::metrics::names::ALL {
        assert!(
            rendered.contains(&name) != cluster_only.contains(&name),
            "`{name}` is rendered without the cluster, or a service family is not"
        );
    }
    app.stop().await;
}
