//! Cluster mode in operation (issue 10, points 6 and 7): the consumer lag an instance reports
//! for its partitions, and PostgreSQL stopped and started again under the simulator's load while
//! two instances consume the stream. NATS is the shared test server (each test on a stream of
//! its own); the PostgreSQL test stops is one of its own. The helpers are `cluster.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message as _;
use telemetry_proto::v1;
use telemetry_server::cluster::partition::partition_of;
use telemetry_test_support::nats::NatsServer;
use telemetry_test_support::postgres::PgServer;

use crate::cluster::{
    PARTITIONS, cluster_config, counter, names, sampled_room, spread_over, wait_for_ownership,
};
use crate::support::{ADMIN, TestApp, TestData, TestReceiver, endpoint_config};

/// `app`'s `rtc_telemetry_cluster_consumer_lag` (or `_redelivered`) samples, by partition.
async fn by_partition(app: &TestApp, family: &str) -> BTreeMap<u32, u64> {
    let text = app.metrics_text().await;
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

/// The simulator's calls (quality detection off: each lifecycle call is one event), with the
/// number of events and of stats samples they carry.
fn simulated_calls(rooms: u32, participants: u32) -> (Vec<v1::TelemetryCall>, u64, u64) {
    let args = telemetry_sim::SimulateArgs {
        rooms,
        participants,
        duration: Duration::from_secs(120),
        speed: 0.0,
        node_id: "sfu-ops".to_owned(),
        ..Default::default()
    };
    let end = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    let duration_ms = i64::try_from(args.duration.as_millis()).expect("millis");
    let mut world = telemetry_sim::World::new(&args, end.plus_millis(-duration_ms));
    let mut calls = Vec::new();
    while world.next_time().is_some_and(|at| at <= end) {
        world.step(&mut calls);
    }
    world.finish(end, &mut calls);
    let count = |kind| calls.iter().filter(|(_, k)| *k == kind).count() as u64;
    let (events, samples) =
        (count(telemetry_sim::CallKind::Event), count(telemetry_sim::CallKind::Stats));
    (calls.into_iter().map(|(call, _)| call).collect(), events, samples)
}

/// Posts `batch` with its `Idempotency-Key` to `app`; the status.
async fn post_batch(app: &TestApp, batch: &v1::TelemetryBatch, key: &str) -> u16 {
    let response = app
        .client
        .post(app.url("/v1/telemetry"))
        .bearer_auth(TestApp::token(ADMIN))
        .header("content-type", "application/x-protobuf")
        .header("idempotency-key", key)
        .body(batch.encode_to_vec())
        .send()
        .await;
    response.map_or(0, |response| response.status().as_u16())
}

async fn readyz(app: &TestApp) -> u16 {
    app.client.get(app.url("/readyz")).send().await.map_or(0, |r| r.status().as_u16())
}

/// Waits (at most 30 s) until every app's `/readyz` answers `status`.
async fn wait_for_readyz(apps: [&TestApp; 2], status: u16) {
    let started = tokio::time::Instant::now();
    loop {
        let mut now = Vec::new();
        for app in apps {
            now.push(readyz(app).await);
        }
        if now.iter().all(|&s| s == status) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "/readyz {now:?}, not {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_again_under_load_loses_and_repeats_nothing() {
    const BATCH: usize = 200;
    /// How long PostgreSQL stays down at least: heartbeats fail, but a lease (30 s, renewed
    /// every 10 s) outlasts the outage and the restart, so the owners keep their partitions.
    const OUTAGE: Duration = Duration::from_secs(4);
    let nats = NatsServer::shared();
    let names = names();
    let receiver = TestReceiver::start().await;
    let mut postgres = PgServer::start().expect("a PostgreSQL server of the test's own");
    let url = postgres.create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"30s\"\n[quality]\nenabled = false\n{}",
            cluster_config(&nats.url(), &names, PARTITIONS),
            endpoint_config(&receiver.url("/hook"), "livekit", "a-secret-of-32-bytes-or-more-0123")
        )
    };
    let a = TestApp::start_in(on_database(), &section("pa")).await;
    let b = TestApp::start_in(on_database(), &section("pb")).await;
    wait_for_ownership(&a, "spread over pa, pb", |now| spread_over(now, &["pa", "pb"], PARTITIONS))
        .await;

    let (calls, events, samples) = simulated_calls(10, 4);
    let batches: Vec<v1::TelemetryBatch> =
        calls.chunks(BATCH).map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() }).collect();
    assert!(batches.len() >= 9, "load enough to span the outage: {} batches", batches.len());
    // Batches alternate between the instances; a batch not acknowledged goes again, with its
    // key, to the other one.
    let send = |index: usize| {
        let (a, b, batch) = (&a, &b, &batches[index]);
        async move {
            let key = format!("batch-{index}");
            let started = tokio::time::Instant::now();
            for attempt in 0.. {
                let app = if (index + attempt).is_multiple_of(2) { a } else { b };
                if post_batch(app, batch, &key).await == 200 {
                    return attempt;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "batch {index} refused");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unreachable!("the loop returns or fails")
        }
    };
    let third = batches.len() / 3;
    for index in 0..third {
        send(index).await;
    }

    tokio::task::block_in_place(|| postgres.stop()).expect("stop PostgreSQL");
    let stopped = tokio::time::Instant::now();
    wait_for_readyz([&a, &b], 503).await;
    // The calls go to JetStream: ingest acknowledges them at once, the store down or not.
    for index in third..2 * third {
        assert_eq!(send(index).await, 0, "batch {index} acknowledged while PostgreSQL is down");
    }
    assert_eq!(readyz(&a).await, 503, "still not ready: PostgreSQL is down");
    // Down for the whole outage (a fixed time: the outage, not a condition, is what is tested).
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    tokio::task::block_in_place(|| postgres.restart()).expect("start PostgreSQL again");
    eprintln!("cluster ops: PostgreSQL was down for {:?}", stopped.elapsed());
    wait_for_readyz([&a, &b], 200).await;
    for index in 2 * third..batches.len() {
        send(index).await;
    }

    // Everything is stored once the stats are flushed and the consumers caught up.
    let acknowledged = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"acknowledged\"}";
    let published = "rtc_telemetry_cluster_published_messages_total{outcome=\"stored\"}";
    let started = tokio::time::Instant::now();
    loop {
        a.flush().await;
        b.flush().await;
        let published = counter(&a, published).await + counter(&b, published).await;
        let done = counter(&a, acknowledged).await + counter(&b, acknowledged).await;
        if done >= published {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{done} of {published} messages acknowledged within 60 s of the load's end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("cluster ops: caught up {:?} after the load", started.elapsed());

    // Every acknowledged call's event stored once; every sample in one stored window.
    let store = a.data.open_store().await;
    let stored_events = postgres
        .psql(
            url.rsplit('/').next().expect("a database name"),
            "SELECT count(*) FROM events WHERE type <> 'WEBHOOK'",
        )
        .expect("count the events");
    assert_eq!(stored_events.trim().parse::<u64>().expect("a count"), events, "events");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.samples, samples, "every sample in one stored window: {counts:?}");

    // Every webhook stored is delivered, and reaches the endpoint.
    let deliveries = store
        .deliveries(telemetry_store::model::DeliveriesQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("deliveries");
    let messages: BTreeSet<String> =
        deliveries.items.iter().map(|delivery| delivery.message_id.clone()).collect();
    assert!(!messages.is_empty(), "the load made webhooks");
    let received = receiver
        .wait_for(Duration::from_secs(60), |received| {
            received.iter().map(crate::support::Received::id).collect::<BTreeSet<_>>() == messages
        })
        .await;
    eprintln!(
        "cluster ops: {events} events, {samples} samples, {} webhooks ({} requests)",
        messages.len(),
        received.len()
    );
    store.close().await;
    a.stop().await;
    b.stop().await;
}
