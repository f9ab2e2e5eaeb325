//! The limits on caller-keyed state, end to end: a client inventing node ids gets a per-call
//! rejection naming `limits.max_nodes` once the limit is reached, the nodes already known keep
//! working, and every refusal is counted in `/metrics`.

use serde_json::{Value, json};

use crate::support::TestApp;

fn room_started(node: &str, room: usize) -> Value {
    json!({ "nodeId": node, "roomStarted": { "room": { "sid": format!("RM_{room}"), "name": format!("room-{room}") } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_beyond_the_limit_are_rejected_per_call_and_counted() {
    let app = TestApp::start_with("[limits]\nmax_nodes = 3\n").await;
    // 20,000 distinct node ids in two requests, each call starting a room of its own.
    let mut accepted = 0;
    let mut rejected = 0;
    for request in 0..2 {
        let calls: Vec<Value> = (0..10_000)
            .map(|index| {
                let n = request * 10_000 + index;
                room_started(&format!("node-{n:05}"), n)
            })
            .collect();
        let (status, body) = app.ingest_json(&json!({ "calls": calls })).await;
        assert_eq!(status, 200, "{body}");
        accepted += body["accepted"].as_u64().unwrap();
        rejected += body["rejectedCount"].as_u64().unwrap();
        let listed = body["rejected"].as_array().unwrap();
        assert!(listed.len() <= 100, "the rejection list is capped");
        if let Some(first) = listed.first() {
            let error = first["error"].as_str().unwrap();
            assert!(error.starts_with("nodeId: "), "{error}");
            assert!(error.contains("limits.max_nodes"), "{error}");
        }
    }
    assert_eq!((accepted, rejected), (3, 19_997));
    // A known node keeps working; its rooms are there, the refused nodes' are not.
    let (status, body) =
        app.ingest_json(&json!({ "calls": [room_started("node-00001", 99_999)] })).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    let rooms = app.get_ok("/v1/rooms?limit=100").await;
    let mut sids: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["sid"].as_str().unwrap())
        .collect();
    sids.sort_unstable();
    assert_eq!(sids, ["RM_0", "RM_1", "RM_2", "RM_99999"]);
    let text = app.metrics_text().await;
    assert!(text.contains("rtc_telemetry_limit_refusals_total{limit=\"nodes\"} 19997"), "{text}");
    assert!(text.contains("rtc_telemetry_live{kind=\"nodes\"} 3"), "{text}");
}
