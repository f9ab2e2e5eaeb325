//! Cluster mode in operation (issue 10, points 6 and 7): the consumer lag an instance reports
//! for its partitions. NATS is the shared test server (each test on a stream of its own). The
//! helpers are `cluster.rs`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use telemetry_proto::v1;
use telemetry_server::cluster::partition::partition_of;
use telemetry_test_support::nats::NatsServer;

use crate::cluster::{
    PARTITIONS, cluster_config, names, sampled_room, spread_over, wait_for_ownership,
};
use crate::support::{TestApp, TestData};

/// `app`'s `rtc_telemetry_cluster_consumer_lag` (or `_redelivered`) samples, by partition.
async fn by_partition(app: &TestApp, family: &str) -> BTreeMap<u32, u64> {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("{family}{{partition=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (partition, value) = rest.split_once("\"} ").expect("a labelled sample");
            (partition.parse().expect("a partition"), value.parse::<f64>().expect("a value") as u64)
        })
        .collect()
}

/// Waits (at most 30 s) until `app`'s consumer lag by partition is `expected`.
async fn wait_for_lag(app: &TestApp, expected: &BTreeMap<u32, u64>) {
    let started = tokio::time::Instant::now();
    loop {
        let lag = by_partition(app, "rtc_telemetry_cluster_consumer_lag").await;
        if &lag == expected {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "lag {lag:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_counts_per_held_partition_what_is_not_stored_yet() {
    const ROOMS: usize = 6;
    let nats = NatsServer::shared();
    let names = names();
    let app = TestApp::start_in(
        TestData::on_postgres(),
        &format!("{}instance_id = \"lag\"\n", cluster_config(&nats.url(), &names, PARTITIONS)),
    )
    .await;
    wait_for_ownership(&app, "every partition held", |now| spread_over(now, &["lag"], PARTITIONS))
        .await;
    // Held and idle: every partition reads 0.
    let mut expected: BTreeMap<u32, u64> =
        (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    wait_for_lag(&app, &expected).await;

    // A room per request, so a message each; its samples keep it unacknowledged until a flush
    // stores them (`stats.flush_interval` is an hour in the tests).
    for room in 0..ROOMS {
        let calls = sampled_room(room, 3);
        *expected.get_mut(&partition_of(&calls[0], PARTITIONS)).expect("a partition") += 1;
        let (status, answer) = app.ingest_protobuf(&v1::TelemetryBatch { calls }).await;
        assert_eq!(status, 200, "{answer}");
    }
    wait_for_lag(&app, &expected).await;
    let redelivered = by_partition(&app, "rtc_telemetry_cluster_consumer_redelivered").await;
    assert_eq!(redelivered.keys().count(), PARTITIONS as usize, "{redelivered:?}");
    assert!(redelivered.values().all(|&n| n == 0), "nothing waited past ack_wait");

    // Stored, acknowledged: the lag is gone.
    app.flush().await;
    let caught_up: BTreeMap<u32, u64> = (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    wait_for_lag(&app, &caught_up).await;
    app.stop().await;
}
